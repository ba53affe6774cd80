"""Dataset tools: reading LabelImg folders and image folders, normalising their labels,
splitting by person, the labels we gave to shared frames ourselves, and the dataset
report."""
