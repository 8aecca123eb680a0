"""Presets of `hh-jax reproduce`: the experiments of a reproduction in order, the axis values
they share, and per-experiment config overrides. The experiment files' own defaults are the
laptop study, so `laptop` overrides nothing.

    smoke     CI's end-to-end test: every stage, tiny (about a minute on 2 CPU cores)
    quick     every stage and figure, smaller grids (target < 10 min on 2 CPU cores)
    laptop    the full CPU-scale study (target < 60 min on 2 CPU cores), the default
    hh-rlhf   real data on one accelerator host: the paper's three smallest shapes trained
              from scratch on HH-RLHF text (byte tokens); no gold labeller, so no Elo stage.
              Its run time is an estimate (~8e17 training FLOPs at 40% of an H100's bf16
              peak is ~35 min, plus latency-bound PPO decoding), not a measurement.
              With `hh-jax reproduce --preset hh-rlhf --weights_dir DIR` it runs on the
              pretrained ladder under DIR instead (`with_pretrained_ladder`).
"""

import dataclasses

from hh_jax.data import hh_synth
from hh_jax.train.experiment import Preset

STAGES = ("base_lm", "ood", "pm_scaling", "pm_mix", "pm_lambda", "pm_halves", "ppo", "best_of_n",
          "elo", "ppo_ensemble", "context_distillation", "ppo_distilled", "policy_eval",
          "online_rlhf", "online_eval")
PM_STAGES = ("pm_scaling", "pm_mix", "pm_lambda", "pm_halves")
# Need the synthetic world: its harm labels, gold labeller or HHH preamble. ppo_ensemble would
# run on real data, but the only thing it is for (the claim ensemble_reduces_overoptimisation)
# is measured on the gold reward, so without one it is 9 PPO runs that test nothing.
NO_GOLD_STAGES = ("ood", "elo", "ppo_ensemble", "context_distillation", "ppo_distilled",
                  "policy_eval", "online_rlhf", "online_eval")


def _each(stages, overrides: dict) -> dict:
  return {stage: dict(overrides) for stage in stages}


def _policy(prompt_dataset: str, max_len: int, max_new_tokens: int,
            eval_prompt_dataset: str | None = None, **ppo) -> dict:
  """Overrides of the stages that sample from policies (PPO from the base LM, against a PM
  ensemble and from the distilled model, best-of-n, the held-out policy evaluation): prompts
  of max_len - max_new_tokens - 1 tokens so that prompt + reply + EOC fits every model. PPO's
  held-out snapshot prompts come from eval_prompt_dataset (default: prompt_dataset)."""
  shared = {"prompt_dataset": prompt_dataset, "max_new_tokens": max_new_tokens,
            "prompt_len": max_len - max_new_tokens - 1}
  bon = {k: ppo.pop(k) for k in ("num_prompts", "n_max") if k in ppo}
  evals = {k: ppo.pop(k) for k in ("eval_prompts",) if k in ppo}
  ppo["eval_prompt_dataset"] = eval_prompt_dataset or prompt_dataset
  return {"ppo": {**shared, **ppo}, "ppo_ensemble": {**shared, **ppo},
          "ppo_distilled": {**shared, **ppo},
          "best_of_n": {**shared, **bon},
          "policy_eval": {**shared, **{"num_prompts": v for v in evals.values()}}}


PRESETS = {
    "laptop": Preset(name="laptop", stages=STAGES,
                     expected_minutes="target < 60 on 2 CPU cores; not yet met, docs/results.md"),
    "quick": Preset(
        name="quick", stages=STAGES,
        expected_minutes="target < 10 on 2 CPU cores; not yet met, docs/results.md",
        axes={"sizes": ("1k", "6k", "25k"), "pm_sizes": ("1k", "6k", "25k"),
              "num_pairs": (500, 2_000, 8_000), "seeds": (0, 1, 2), "mix_sizes": ("1k", "6k"),
              "helpful_fractions": (0.0, 0.25, 0.5, 0.75, 1.0), "mix_pairs": 4_000,
              "half_sizes": ("1k", "6k", "25k"), "half_pairs": 8_000, "policy_size": "25k",
              "policy_sizes": ("6k", "25k"), "snapshot_every": 4, "lm_budget": 30_000,
              "ppo_seeds": (0, 1, 2), "harmless_weights": (1.0, 3.0, 10.0),
              "ood_prompts": (2000, 1000), "online_rounds": 3, "labels_per_round": 500,
              # ppo_ensemble: the mean ensemble and the ens1 control only (6 runs, not 9): the
              # min kind is the laptop preset's. Estimated ~3-4 min of the quick run (a run
              # ~ a ppo-stage run, 30-40 s; measured at quick's settings on the smoke models:
              # 15 s for a mean-ensemble run vs 14 s for a single-PM one, once compiled).
              "ensembles": ("mean",)},
        overrides={"context_distillation": {"num_transcripts": 10_000},
                   "online_rlhf": {"ppo.prompt_dataset": "hh_synth/prompts", "ppo.prompt_len": 47,
                                   "ppo.max_new_tokens": 16, "ppo.num_iterations": 20},
                   "online_eval": {"prompt_dataset": "hh_synth/prompts", "prompt_len": 47,
                                   "max_new_tokens": 16, "num_prompts": 1000},
                   **_policy("hh_synth/prompts", 64, 16, num_iterations=40, batch_size=64,
                             minibatch_size=16, num_eval_prompts=128,
                             **{"optim.learning_rate": 1e-4},
                             num_prompts=64, n_max=32, eval_prompts=1000)}),
    "smoke": Preset(
        name="smoke", stages=STAGES, expected_minutes="~1 on 2 CPU cores",
        axes={"sizes": ("1k", "6k"), "pm_sizes": ("1k", "6k"), "num_pairs": (200, 600),
              "seeds": (0, 1), "mix_sizes": ("1k",), "helpful_fractions": (0.0, 0.5, 1.0),
              "mix_pairs": 300, "half_sizes": ("1k", "6k"), "half_pairs": 400,
              "policy_size": "6k", "policy_sizes": ("1k", "6k"), "snapshot_every": 1,
              "lm_budget": None, "ppo_seeds": (0,), "mix_seeds": (0,),
              "harmless_weights": (1.0, 10.0), "ood_prompts": (1000, 500), "online_rounds": 1,
              "labels_per_round": 50},
        overrides={"base_lm": {"data.dataset": "hh_synth/lm-1000-s0-t100", "data.max_len": 48},
                   "ood": {"n_boot": 50, "ks": (1, 10), "num_draws": 2},
                   "context_distillation": {"dataset": "hh_synth/lm-1000-s0-t100",
                                            "num_transcripts": 256, "batch_size": 32},
                   "online_rlhf": {"pm.data.dataset": "hh_synth/mix-2000-s0-t300",
                                   "ppo.prompt_dataset": "hh_synth/prompts-500-s0-t50",
                                   "ppo.prompt_len": 39, "ppo.max_new_tokens": 8,
                                   "ppo.num_iterations": 2, "ppo.batch_size": 16,
                                   "ppo.minibatch_size": 16},
                   "online_eval": {"prompt_dataset": "hh_synth/prompts-500-s0-t50", "prompt_len": 39,
                                   "max_new_tokens": 8, "num_prompts": 40},
                   **_each(PM_STAGES, {"data.dataset": "hh_synth/mix-2000-s0-t300",
                                       "data.max_len": 48}),
                   **_policy("hh_synth/prompts-500-s0-t50", 48, 8, num_iterations=4,
                             batch_size=16, minibatch_size=16, **{"optim.learning_rate": 1e-4},
                             num_prompts=8, n_max=8, eval_prompts=40)}),
    "hh-rlhf": Preset(
        name="hh-rlhf", stages=tuple(s for s in STAGES if s not in NO_GOLD_STAGES), has_gold=False,
        expected_minutes="an estimated 1-2 h on one H100 (not measured)",
        axes={"sizes": ("13M", "42M", "197M"), "pm_sizes": ("13M", "42M", "197M"),
              "num_pairs": (10_000, 40_000, 160_000), "seeds": (0,), "mix_sizes": ("13M", "42M"),
              "helpful_fractions": (0.0, 0.25, 0.5, 0.75, 1.0), "mix_pairs": 40_000,
              "half_sizes": ("13M", "42M", "197M"), "half_pairs": 80_000, "policy_size": "42M",
              "policy_sizes": ("13M", "42M"), "snapshot_every": 0, "lm_budget": None,
              "ppo_seeds": (0,), "mix_seeds": (0,)},
        overrides={"base_lm": {"data.dataset": "hh_rlhf/all", "data.max_len": 512,
                               "dtype": "bfloat16"},
                   **_each(PM_STAGES, {"data.dataset": "hh_rlhf/all", "data.max_len": 512,
                                       "dtype": "bfloat16", "batch_size": 64}),
                   **_policy("hh_rlhf/all", 512, 128, num_iterations=400, batch_size=128,
                             minibatch_size=16, **{"optim.learning_rate": 1e-5},
                             num_prompts=256, n_max=64)}),
}


def with_pretrained_ladder(preset: Preset, weights_dir: str) -> Preset:
  """`preset` on the Hugging Face checkpoints under weights_dir (smallest first; e.g. Pythia
  70M..1.4B, docs/pretrained.md): PMs finetuned from each checkpoint on HH-RLHF at three
  dataset sizes (experiments/pm_pretrained.py), then PPO from each checkpoint against its own
  PM, scored by the others (experiments/ppo_pretrained.py)."""
  from experiments.pm_pretrained import checkpoint_ladder  # reads weights_dir only when asked
  ladder = checkpoint_ladder(weights_dir)
  if not ladder:
    raise ValueError(f"--weights_dir {weights_dir}: no checkpoint directory (config.json + "
                     f"*.safetensors) found directly under it")
  return dataclasses.replace(
      preset, stages=("pm_pretrained", "ppo_pretrained"),
      axes={"checkpoints": ladder, "num_pairs": (10_000, 40_000, 160_000), "seeds": (0,)},
      overrides={"ppo_pretrained": {"num_prompts": None}},
      expected_minutes=f"{len(ladder)} checkpoints of {weights_dir} (not measured)")


PAPER_FAITHFUL_DIR = "paper-faithful"


def _half_helpful(dataset: str) -> str:
  """The hh_synth prompt dataset of the same size and seed with 50% helpful prompts."""
  cfg = hh_synth.config_of_dataset(dataset)
  if cfg is None:
    return dataset
  return "hh_synth/" + hh_synth.make_config(cfg.kind, cfg.size, cfg.seed, cfg.test_size, 0.5,
                                           cfg.world_seed).name


def paper_faithful(preset: Preset) -> Preset:
  """`preset` with the paper's own choices where the preset departs from them (the second
  column of the report): PMs at a fixed learning rate (no linear decay), RL and best-of-n
  prompts 50% helpful / 50% red-team (not 90/10), one PPO epoch per batch (not 2), the paper's
  KL coefficient 0.001 on the raw PM score (not 0.03 on the normalised one), in the
  online stage's PMs and PPO runs as in the others; the held-out policy evaluation keeps the
  preset's prompts (a measurement, not a choice). The base LMs are the preset's own (`hh-jax
  reproduce --paper-faithful` links them), so the stages are the preset's without base_lm (and
  ood, which reads only the base LMs). Where the preset's choices came from:
  experiments/common.py (LR decay), experiments/ppo.py (prompt mix, epochs)."""
  from experiments import best_of_n, ppo   # the experiment files' own prompt datasets
  overrides = {stage: dict(preset.overrides.get(stage, {})) for stage in preset.stages}
  for stage in PM_STAGES:
    if stage in overrides:
      overrides[stage]["optim.schedule"] = "constant"
  for stage, module in (("ppo", ppo), ("ppo_ensemble", ppo), ("ppo_distilled", ppo),
                        ("best_of_n", best_of_n)):
    if stage in overrides:
      prompts = overrides[stage].get("prompt_dataset", module.get_config().prompt_dataset)
      overrides[stage]["prompt_dataset"] = _half_helpful(prompts)
  for stage in ("ppo", "ppo_ensemble", "ppo_distilled"):
    if stage in overrides:
      overrides[stage]["ppo_epochs"] = 1
      overrides[stage]["kl_coef"] = 0.001
  for stage in ("ppo", "ppo_distilled"):      # ppo_ensemble needs normalised members
    if stage in overrides:
      overrides[stage]["reward_norm"] = False
  if "online_rlhf" in overrides:              # its PMs and PPO runs, nested under pm. and ppo.
    from experiments import online_rlhf
    o = overrides["online_rlhf"]
    prompts = o.get("ppo.prompt_dataset", online_rlhf.get_config().ppo.prompt_dataset)
    o.update({"pm.optim.schedule": "constant", "ppo.prompt_dataset": _half_helpful(prompts),
              "ppo.ppo_epochs": 1, "ppo.kl_coef": 0.001, "ppo.reward_norm": False})
  return dataclasses.replace(preset, name=f"{preset.name}-paper-faithful",
                             stages=tuple(s for s in preset.stages if s not in ("base_lm", "ood")),
                             overrides=overrides)
