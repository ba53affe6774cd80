"""Training, export and evaluation of the detection models the workers serve, and
the dataset tools that read their training data, one subpackage for each:

- :mod:`models.dataset`: LabelImg and image folders, labels, splits by person, the
  labels we gave to shared frames, the dataset report;
- :mod:`models.networks`: the pretrained networks (fetched and checked by SHA-256,
  replayed as TensorFlow ops) and the stages built on them: hands, gesture head,
  faces, smile, poses;
- :mod:`models.serving`: the exported model (SavedModel + TFLite, one label map);
- :mod:`models.train`: the training recipe, and rebuilding a trained head;
- :mod:`models.evaluate`: metrics, scoring an exported model as production sees it,
  the peer baseline, the model card.

Imports go one way: ``serving`` uses ``networks`` (and ``dataset``'s label names);
``train`` and ``evaluate`` use the model, never the reverse
(``tests/test_models_layout.py``). Modules that build a model import TensorFlow at
import time; import them only where a model is built or exported. ``dataset`` and
``evaluate.evaluation`` do not.
"""
