"""Few-shot classification and the paper's evaluation protocols. numpy/sklearn only, never JAX."""
