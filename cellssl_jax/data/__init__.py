"""Datasets (TFDS builders) and the input pipeline. Imports neither models nor dino."""
