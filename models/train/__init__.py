"""Training: the recipe from the shared data to an exported model (:mod:`.training`),
the head's training, the real hands cut from annotated frames, the leave-one-person-out
figures, and rebuilding a trained head with this version's graph."""
