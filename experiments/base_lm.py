"""Base LMs: pretrain every rung of the ladder on the synthetic world's corpus.

The paper's PMs and policies start from pretrained LMs; here each size is pretrained
(next-token loss, one epoch, cosine LR, `lm_budget(size)` transcripts) on `hh_synth/lm`,
transcripts whose replies have mixed quality, so the base policy leaves room for RLHF to improve. Every other stage of the
reproduction starts from these runs (`ref("base_lm", model_size=...)`).

    hh-jax sweep experiments/base_lm.py --root runs
"""

from hh_jax.config import DataConfig, OptimConfig, RunConfig
from hh_jax.models import count_params, ladder_config

NEEDS = ()
AXES = {"sizes": ("1k", "6k", "25k", "100k", "400k"), "lm_budget": "sqrt"}


def get_config() -> RunConfig:
  return RunConfig(
      kind="lm", model_size="25k", batch_size=64, log_every=50, checkpoint_every=500,
      data=DataConfig(dataset="hh_synth/lm", max_len=64, num_train_pairs=60_000,
                      num_eval_pairs=None),
      optim=OptimConfig(learning_rate=2e-3, warmup_steps=50, schedule="cosine"))


def lm_budget(size: str) -> int:
  """Pretraining transcripts for a size: D = 60k sqrt(P / 100k), rounded to thousands and
  clipped to [30k, 120k] (P = non-embedding parameters). One budget for every size (60k
  until this rule) left the larger LMs undertrained: the eval loss fell 0.715 -> 0.672 ->
  0.660 nats from 25k to 100k to 400k parameters. D grows more slowly than P (compute-optimal
  D grows about as P): a CPU-sized compromise that still gives the 400k LM twice the
  100k's data. The floor keeps the small LMs near convergence."""
  params = count_params(ladder_config(size, vocab_size=256, max_len=64), non_embedding=True)
  return int(min(120_000, max(30_000, round(60 * (params / 100_000) ** 0.5) * 1000)))


def get_sweep(axes: dict) -> list[dict]:
  """Axis `lm_budget`: "sqrt" (the `lm_budget` rule), a number of transcripts for every size,
  or None (the whole training split)."""
  budget = axes["lm_budget"]
  return [{"model_size": size, "_name": size,
           "data.num_train_pairs": lm_budget(size) if budget == "sqrt" else budget}
          for size in axes["sizes"]]
