"""The self-supervised method (DINO) as pure functions."""
