"""Training, export and evaluation of the detection models the workers serve.

Modules here import TensorFlow at import time; import them only where a model is
built or exported, never from code paths that must start without TensorFlow.
"""
