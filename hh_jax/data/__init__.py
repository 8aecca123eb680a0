"""Data: tokenizers, the TFDS datasets `hh_rlhf` and `hh_synth`, pair batching.

Importing this package registers both TFDS builders, so `tfds.builder("hh_rlhf/...")`
and `tfds.data_source("hh_synth/...")` work.
"""
from hh_jax.data import hh_rlhf  # registers the TFDS builder
from hh_jax.data import hh_synth  # registers the TFDS builder
