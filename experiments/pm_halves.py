"""Train and test PMs on disjoint halves of the comparisons (Bai et al. section 4.2, Fig 4, 33).

PPO optimises a "train" PM; "test" PMs, trained on the other half of the comparison pool
(a fixed, seed-independent split), score the same samples and never enter the loss, so the
gap between the two measures over-optimisation of the train PM.

    hh-jax sweep experiments/pm_halves.py --root runs     # after base_lm
"""

from experiments import common

NEEDS = ("base_lm",)
AXES = {"half_sizes": ("6k", "25k", "100k"), "half_pairs": 16_000}


def get_config():
  return common.pm_config()


def get_sweep(axes: dict) -> list[dict]:
  return [common.pm_run(size, **{"data.num_train_pairs": axes["half_pairs"],
                                 "data.split_half": half, "_name": f"{role}-{size}"})
          for half, role in ((0, "train"), (1, "test")) for size in axes["half_sizes"]]
