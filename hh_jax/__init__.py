"""hh-jax: scaling studies of RLHF in JAX (Bai et al. 2022, arXiv 2204.05862)."""

__version__ = "0.1.0"
