"""Loss weighting between helpfulness and harmlessness: L = L_help + lambda L_harm over model
size (Bai et al. Fig 27).

PMs trained on a mix with more helpful than harmless comparisons (75% helpful, about HH-RLHF's
static-data proportion, which is why the paper up-weights harmlessness), for lambda in
{1, 3, 10} (the paper's {1, 2, 3, 4, 10} thinned to fit the laptop budget; `--axis
harmless_weights=(1,2,3,4,10)` restores it), at the smallest and the largest size of `pm_sizes` (or `lambda_sizes` when
set), over seeds; each scored on helpful and on harmless test pairs. The paper: raising lambda
from 1 to 10 costs a 13M PM 7.4% helpfulness accuracy and a 52B PM 1.5%. The analysis
(`analysis.pm_weighting`) compares the slope of helpful accuracy in lambda across sizes, with
an interval over seeds.

    hh-jax sweep experiments/pm_lambda.py --root runs       # after base_lm
"""

from experiments import common

NEEDS = ("base_lm",)
AXES = {"pm_sizes": ("1k", "6k", "25k", "100k", "400k"), "lambda_sizes": (),
        "harmless_weights": (1.0, 3.0, 10.0), "mix_pairs": 8_000, "seeds": (0, 1, 2),
        "lambda_helpful_fraction": 0.75}


def sizes(axes: dict) -> tuple[str, ...]:
  """lambda_sizes when set, else the smallest and the largest of pm_sizes (the preset's)."""
  chosen = tuple(axes["lambda_sizes"]) or (axes["pm_sizes"][0], axes["pm_sizes"][-1])
  return tuple(dict.fromkeys(chosen))


def get_config():
  return common.pm_config()


def get_sweep(axes: dict) -> list[dict]:
  return [common.pm_run(size, **{"data.num_train_pairs": axes["mix_pairs"],
                                 "data.helpful_fraction": axes["lambda_helpful_fraction"],
                                 "data.harmless_weight": float(lam), "seed": seed,
                                 "_name": f"{size}-lam{float(lam):g}-s{seed}"})
          for size in sizes(axes) for lam in axes["harmless_weights"] for seed in axes["seeds"]]
