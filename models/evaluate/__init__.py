"""Evaluation: metrics (AP, classification), scoring an exported model through the
worker's decode path (:mod:`.assessment`), faces and poses on their own data, the peer
baseline (MediaPipe's stock recognizer, in its own environment) and the model card."""
