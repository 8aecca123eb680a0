"""OOD detection of harmful requests from base-LM activations (Bai et al. 2022 section 5.4,
Figs 22, 23, 39).

For every base LM and prompt seed: a Gaussian fitted on the helpful train prompts'
activations at each layer (the L + 1 residual streams, last prompt token), the simplified
relative Mahalanobis distance (SRMD) of each test prompt from it, and its AUROC for helpful vs
harmful (red-team, harm > 0) test prompts, with a bootstrap interval; plain Mahalanobis beside
it (Fig 39); and few-shot outlier exposure, a linear head on the middle layer trained with k in
{1, 10, 100} harmful train prompts (5 draws each). Needs the synthetic world (harm labels); no
training. The seeds are independent prompt draws, not base-LM seeds (one base LM per size).

    hh-jax sweep experiments/ood.py --root runs         # after base_lm
    hh-jax analyze ood runs --out figures/ood           # once wired; or analysis.ood.analyze_ood
"""

from hh_jax.train.experiment import ref
from hh_jax.train.ood_run import OODConfig

NEEDS = ("base_lm",)
# sizes: the base LMs' own axis; seeds: independent prompt draws (train/test splits, as the
# paper's 3 random splits of Fig 22) and outlier-exposure draws; ood_prompts: (fit, eval) sizes.
AXES = {"sizes": ("1k", "6k", "25k", "100k", "400k"), "seeds": (0, 1, 2),
        "ood_prompts": (4000, 2000)}
PROMPT_SEED_OFFSET = 100   # draws disjoint from prompts-4000-s1, on which the pooling was chosen


def prompt_dataset(seed: int, axes: dict) -> str:
  n_fit, n_eval = axes["ood_prompts"]
  return f"hh_synth/prompts-{n_fit}-s{PROMPT_SEED_OFFSET + seed}-t{n_eval}"


def get_config() -> OODConfig:
  return OODConfig(ks=(1, 10, 100), num_draws=5, n_boot=200)


def get_sweep(axes: dict) -> list[dict]:
  return [{"base_lm": ref("base_lm", model_size=size), "seed": seed,
           "prompt_dataset": prompt_dataset(seed, axes), "_name": f"{size}-s{seed}"}
          for size in axes["sizes"] for seed in axes["seeds"]]
