"""Base LMs: pretrain the laptop ladder on the synthetic world's corpus.

The paper's PMs and policies start from pretrained LMs; here each rung of the ladder is
pretrained (next-token loss, one epoch) on `hh_synth/lm`, transcripts whose replies have
mixed quality, so the base policy leaves room for RLHF to improve.

    hh-jax sweep experiments/base_lm.py --workdir runs/base_lm
"""

from hh_jax.config import DataConfig, OptimConfig, RunConfig

SIZES = ("1k", "6k", "25k", "100k", "400k")


def get_config() -> RunConfig:
  return RunConfig(
      kind="lm", model_size="25k", batch_size=64, log_every=50, checkpoint_every=500,
      data=DataConfig(dataset="hh_synth/lm", max_len=64, num_train_pairs=50_000,
                      num_eval_pairs=None),
      optim=OptimConfig(learning_rate=2e-3, warmup_steps=50, schedule="cosine"))


def get_sweep() -> list[dict]:
  return [{"model_size": size} for size in SIZES]
