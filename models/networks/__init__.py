"""The pretrained networks inside the model and how they are brought in: fetched and
checked by SHA-256 (:mod:`.base_models`), replayed as TensorFlow ops
(:mod:`.tflite_import`), and the stages built on them (hands, the gesture head, faces,
smile, poses). Imports nothing from training or evaluation."""
