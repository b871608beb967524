"""Encoders and heads (Flax Linen). Imports nothing from the package."""
