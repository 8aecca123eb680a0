"""The transformer family behind a pure facade.

    graphdef, params = init(cfg, key)                  # params: a plain nested dict of arrays
    out = apply(graphdef, params, tokens, score_index=eoc)   # ModelOutputs
    out, cache = prefill(graphdef, params, prompt, cache)
    logits, values, cache = decode_step(graphdef, params, token, cache)
    graphdef, params = from_pretrained(hf_dir)          # Hugging Face checkpoints (models.hf)
    save_pretrained(out_dir, graphdef, params)

Nothing outside this package needs NNX: params are an ordinary pytree for optax,
orbax and jax.jit, and `graphdef` is a static, hashable description of the module.
"""

from hh_jax.models.api import abstract_init, apply, config_of, decode_step, init, prefill
from hh_jax.models.config import (LADDER, LAPTOP_LADDER, PAPER_LADDER, ModelConfig, computed_keys,
                                  count_params, forward_flops_per_token, ladder_config)
from hh_jax.models.transformer import KVCache, ModelOutputs, init_cache
from hh_jax.models.hf import from_pretrained, save_pretrained  # noqa: E402  (imports api)

__all__ = ["init", "abstract_init", "from_pretrained", "save_pretrained", "apply", "config_of", "prefill", "decode_step", "init_cache", "KVCache", "ModelOutputs",
           "ModelConfig", "LADDER", "LAPTOP_LADDER", "PAPER_LADDER", "ladder_config",
           "count_params", "computed_keys", "forward_flops_per_token"]
