"""OOD detection of harmful requests from base-LM activations (Bai et al. 2022 section 5.4,
Figs 22, 23, 39).

For every base LM: a Gaussian fitted on the helpful train prompts' activations at each layer
(the L + 1 residual streams, last prompt token), the simplified relative Mahalanobis distance
(SRMD) of each test prompt from it, and its AUROC for helpful vs harmful (red-team, harm > 0)
test prompts, with a bootstrap interval; plain Mahalanobis beside it (Fig 39); and few-shot
outlier exposure, a linear head on the middle layer trained with k in {1, 10, 100} harmful
train prompts (5 draws each). Needs the synthetic world (harm labels); no training.

    hh-jax sweep experiments/ood.py --root runs         # after base_lm
    hh-jax analyze ood runs --out figures/ood           # once wired; or analysis.ood.analyze_ood
"""

from hh_jax.train.experiment import ref
from hh_jax.train.ood_run import OODConfig

NEEDS = ("base_lm",)
AXES = {"sizes": ("1k", "6k", "25k", "100k", "400k")}   # the base LMs' own axis: one run each


def get_config() -> OODConfig:
  return OODConfig(prompt_dataset="hh_synth/prompts-4000-s0-t2000", ks=(1, 10, 100),
                   num_draws=5, n_boot=1000)


def get_sweep(axes: dict) -> list[dict]:
  return [{"base_lm": ref("base_lm", model_size=size), "_name": size} for size in axes["sizes"]]
