"""HH finetuning after preference-model pretraining: the PM scaling grid of
experiments/pm_scaling.py, each PM starting from the PMP run of its size (experiments/pmp.py).

As in the paper the finetuning LR is lower than the PMP LR (paper: 0.01x vs 0.1x the
pretraining LR; here 3e-4 vs 1e-3). Compare with pm_scaling (no PMP) by analysing both
directories: the paper finds PMP improves sample efficiency, most at small dataset sizes.

    hh-jax sweep experiments/pm_pmp.py --root runs      # after pmp
    hh-jax analyze pm runs/pm_pmp --out figures/pm_pmp
"""

from experiments import common, pm_scaling
from hh_jax.config import override
from hh_jax.train.experiment import ref

NEEDS = ("pmp",)
AXES = dict(pm_scaling.AXES)


def get_config():
  return override(common.pm_config(), {"optim.learning_rate": 3e-4})


def get_sweep(axes: dict) -> list[dict]:
  return [{"model_size": s, "init_from": ref("pmp", model_size=s), "data.num_train_pairs": n,
           "seed": seed, "_name": f"{s}-n{n}-s{seed}"}
          for s in axes["pm_sizes"] for n in axes["num_pairs"] for seed in axes["seeds"]]
