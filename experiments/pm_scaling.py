"""PM scaling: accuracy vs model size x number of comparisons (Bai et al. Fig 7, 31, 32).

Each PM starts from the base LM of its size and trains one epoch on the first D comparisons
of a per-seed permutation of `hh_synth/mix` (so for one seed every smaller dataset is a
subset of every larger one); every run is scored on all test pairs beside the gold
labeller's Bayes ceiling. The analysis fits acc = a + b ln(P / P0) + c ln(D / D0).

Laptop grid: 5 sizes (906 to 397k non-embedding parameters) x 4 dataset sizes (1k to 64k
pairs) x 3 seeds (claims are judged with intervals over the seeds).

    hh-jax sweep experiments/base_lm.py --root runs
    hh-jax sweep experiments/pm_scaling.py --root runs
    hh-jax analyze pm runs/pm_scaling --out figures/pm
"""

from experiments import common

NEEDS = ("base_lm",)
AXES = {"pm_sizes": ("1k", "6k", "25k", "100k", "400k"),
        "num_pairs": (1_000, 4_000, 16_000, 64_000), "seeds": (0, 1, 2)}


def get_config():
  return common.pm_config()


def get_sweep(axes: dict) -> list[dict]:
  return [common.pm_run(size, **{"data.num_train_pairs": n, "seed": seed,
                                 "_name": f"{size}-n{n}-s{seed}"})
          for size in axes["pm_sizes"] for n in axes["num_pairs"] for seed in axes["seeds"]]
