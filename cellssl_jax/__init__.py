"""cellssl-jax: DINO self-supervised XCiT features for haematological single-cell images."""

__version__ = "0.1.0"
