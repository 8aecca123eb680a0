"""HH finetuning after preference-model pretraining: the PM scaling grid of
`experiments/pm_scaling.py`, each PM starting from the PMP run of its size
(`experiments/pmp.py`, in the same parent directory `{root}`).

As in the paper the finetuning LR is lower than the PMP LR (paper: 0.01x vs 0.1x the
pretraining LR; here 3e-4 vs 1e-3). Compare with `experiments/pm_scaling.py` (no PMP) by
analysing both directories: the paper finds PMP improves sample efficiency, most at small
dataset sizes (in the synthetic world, helpfulness-only PMP also works against harmlessness
at small sizes: see the README).

    hh-jax sweep experiments/pm_pmp.py --workdir runs/pm_pmp
    hh-jax analyze pm runs/pm_pmp --out figures/pm_pmp
"""

from experiments import pm_scaling
from hh_jax.config import RunConfig, override


def get_config() -> RunConfig:
  return override(pm_scaling.get_config(), {"optim.learning_rate": 3e-4})


def get_sweep() -> list[dict]:
  return [{"model_size": o["model_size"], "init_from": "{root}/pmp/model_size=" + o["model_size"],
           **{k: v for k, v in o.items() if k != "model_size"}}
          for o in pm_scaling.get_sweep()]
