"""The exported model: the stages joined into one servable graph, exported as a
SavedModel and a TFLite file (:mod:`.gesture_model`), and the colour plumbing model
(:mod:`.contract_model`). Imports nothing from training or evaluation: they use the
model, never the reverse."""

from typing import Final

TFLITE_LANDMARKS: Final = ("float", "region-int8", "int8")
"""What ``ModelConfig.tflite_landmarks`` may be: here, without TensorFlow, so the
command line can offer the choices without loading it."""
