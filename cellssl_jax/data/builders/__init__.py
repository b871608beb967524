"""TFDS builders for the paper's datasets and for user image folders."""
