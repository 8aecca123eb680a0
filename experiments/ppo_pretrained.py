"""PPO from a pretrained checkpoint against PMs finetuned from the same ladder (Bai et al. Fig 4, 13).

The policy starts from a local Hugging Face checkpoint directory (`policy_init` accepts one:
`hh_jax.train.lifecycle.load_model` reads it in hh-jax's vocabulary) and is optimised against
the train PM finetuned from the same checkpoint by experiments/pm_pretrained.py; the PMs of
every other checkpoint of the ladder score the same samples as test PMs. Prompts are
HH-RLHF contexts, read with the checkpoint's tokenizer. HH-RLHF has no gold reward.

    hh-jax sweep experiments/pm_pretrained.py --root runs --axis "checkpoints=('weights/pythia-70m', 'weights/pythia-160m')"
    hh-jax sweep experiments/ppo_pretrained.py --root runs --axis "checkpoints=('weights/pythia-70m', 'weights/pythia-160m')"
"""

from __future__ import annotations

from experiments.pm_pretrained import PYTHIA, checkpoint_name
from hh_jax.config import OptimConfig
from hh_jax.train.experiment import ref, refs
from hh_jax.train.ppo import PPOConfig

NEEDS = ("pm_pretrained",)
AXES = {"checkpoints": PYTHIA, "num_pairs": (None,), "seeds": (0,)}


def get_config() -> PPOConfig:
  """Small-LR PPO with 64-token replies to 448-token HH-RLHF contexts (512 positions for the
  PM's prompt + reply + EOC)."""
  return PPOConfig(
      num_iterations=200, batch_size=64, minibatch_size=8, ppo_epochs=2, max_new_tokens=63,
      prompt_len=448, prompt_dataset="hh_rlhf/all", temperature=1.0, kl_coef=0.05,
      checkpoint_every=20, optim=OptimConfig(learning_rate=1e-6, warmup_steps=0, b2=0.999))


def get_sweep(axes: dict) -> list[dict]:
  """One policy per checkpoint, against the PM finetuned from it (largest dataset, first seed)."""
  n, seed = axes["num_pairs"][-1], axes["seeds"][0]
  runs = []
  for path in axes["checkpoints"]:
    runs.append({"policy_init": path, "tokenizer": path,
                 "reward_pm": ref("pm_pretrained", init_from_hf=path, num_train_pairs=n,
                                  seed=seed),
                 "test_pms": refs("pm_pretrained", num_train_pairs=n, seed=seed),
                 "_name": f"policy-{checkpoint_name(path)}"})
  return runs
