"""The helpful/harmless tension: % helpful data in the PM's training mix (Bai et al. Fig 19, 26).

A fixed budget of comparisons with 0% to 100% helpful pairs, for a small and a larger PM,
each scored on helpful and on harmless test pairs: a PM trained on one distribution only
should be near or below chance on the other. Every cell is trained with each seed of
`mix_seeds`, so the claim has an interval over seeds.

    hh-jax sweep experiments/pm_mix.py --root runs        # after base_lm
    hh-jax analyze pm runs/pm_mix --out figures/pm_mix
"""

from experiments import common

NEEDS = ("base_lm",)
AXES = {"mix_sizes": ("6k", "25k"), "helpful_fractions": (0.0, 0.25, 0.5, 0.75, 1.0),
        "mix_pairs": 8_000, "mix_seeds": (0, 1, 2)}


def get_config():
  return common.pm_config()


def get_sweep(axes: dict) -> list[dict]:
  return [common.pm_run(size, **{"data.num_train_pairs": axes["mix_pairs"],
                                 "data.helpful_fraction": f, "seed": seed,
                                 "_name": f"{size}-h{int(round(100 * f))}-s{seed}"})
          for size in axes["mix_sizes"] for f in axes["helpful_fractions"]
          for seed in axes["mix_seeds"]]
