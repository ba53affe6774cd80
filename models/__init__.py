"""Training, export and evaluation of the detection models the workers serve, and
the dataset tools that read their training data.

Model modules (``contract_model``) import TensorFlow at import time; import them only
where a model is built or exported. The dataset tools (``voc``, ``labels``,
``splits``, ``imagefolder``, ``plots``) and ``evaluation`` do not.
"""
