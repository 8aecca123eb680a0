"""Base LMs: pretrain every rung of the ladder on the synthetic world's corpus.

The paper's PMs and policies start from pretrained LMs; here each size is pretrained
(next-token loss, one epoch, cosine LR) on `hh_synth/lm`, transcripts whose replies have
mixed quality, so the base policy leaves room for RLHF to improve. Every other stage of the
reproduction starts from these runs (`ref("base_lm", model_size=...)`).

    hh-jax sweep experiments/base_lm.py --root runs
"""

from hh_jax.config import DataConfig, OptimConfig, RunConfig

NEEDS = ()
AXES = {"sizes": ("1k", "6k", "25k", "100k", "400k")}


def get_config() -> RunConfig:
  return RunConfig(
      kind="lm", model_size="25k", batch_size=64, log_every=50, checkpoint_every=500,
      data=DataConfig(dataset="hh_synth/lm", max_len=64, num_train_pairs=60_000,
                      num_eval_pairs=None),
      optim=OptimConfig(learning_rate=2e-3, warmup_steps=50, schedule="cosine"))


def get_sweep(axes: dict) -> list[dict]:
  return [{"model_size": size, "_name": size} for size in axes["sizes"]]
