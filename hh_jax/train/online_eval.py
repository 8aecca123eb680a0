"""The gold-labeller comparison of an online run's final policy with a static run's (kind
"online_eval"), and the gold reward of every round's policy, on the same held-out prompts.

Each policy (online final, static final, the base LM, each online round's PPO policy) replies
once to each of `samples_per_prompt` copies of the first num_prompts test prompts, with the
same sampling key (common random numbers); R = the gold reward `reward` of each reply. The
gold labeller prefers the online reply with probability p_i = sigmoid(beta (R_on,i - R_st,i))
(labeler.preference_prob, elo_eval's labeller: hh, beta 2), so the expected gold win rate and
the Elo difference it implies are

    win_rate = mean_i p_i,        elo_diff = 400 log10(win_rate / (1 - win_rate)).

online_vs_static.json: win_rate, elo_diff, mean gold of each policy ("gold": {"base", "round-r",
"online", "static"}), the online and static runs' per-round pool sizes, PM test accuracies
and PPO rollout gold ("rounds", "static_rounds"); the per-reply
gold rewards and replies go to online_vs_static.npz, so the win rate can be recomputed.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import numpy as np

from hh_jax.config import config_field, validate_fields
from hh_jax.data import pipeline
from hh_jax.data.world.labeler import preference_prob
from hh_jax.train import lifecycle
from hh_jax.train.evals import evaluation_task
from hh_jax.train.online import ROUNDS, round_dir
from hh_jax.train.rollout import sample_replies
from hh_jax.train.ppo_run import check_compatible

RESULT, ARRAYS = "online_vs_static.json", "online_vs_static.npz"


@dataclasses.dataclass(frozen=True)
class OnlineEvalConfig:
  """online_run and static_run: finished online runs (static=False and static=True)."""

  kind: str = config_field("online_eval", choices=("online_eval",))
  online_run: str = ""
  static_run: str = ""
  prompt_dataset: str = "hh_synth/prompts"
  prompt_split: str = "test"
  prompt_len: int = config_field(47, ge=1)
  num_prompts: int = config_field(1000, ge=1)
  samples_per_prompt: int = config_field(1, ge=1)
  max_new_tokens: int = config_field(16, ge=1)
  temperature: float = config_field(1.0, ge=0.0)
  reward: str = config_field("hh", choices=("hh", "helpful", "harmless"))
  beta: float = config_field(2.0, gt=0.0)
  seed: int = config_field(0, ge=0)
  data_dir: str | None = None
  tokenizer: str = "auto"

  def __post_init__(self):
    validate_fields(self)


def gold_win_rate(reward_a, reward_b, beta: float) -> float:
  """mean_i sigmoid(beta (a_i - b_i)): the expected rate at which the gold labeller prefers a."""
  return float(np.mean(preference_prob(reward_a, reward_b, beta)))


def elo_difference(win_rate: float) -> float:
  """400 log10(w / (1 - w)): the Elo gap whose expected score is w (+-inf at 1 and 0)."""
  if win_rate <= 0.0 or win_rate >= 1.0:
    return math.copysign(math.inf, win_rate - 0.5)
  return 400.0 * math.log10(win_rate / (1.0 - win_rate))


def eval_policies(online_run: str, static_run: str) -> dict[str, str]:
  """name -> run dir: online, static, base (the online run's base LM), round-r (its PPO runs)."""
  for run, static in ((online_run, False), (static_run, True)):
    if not lifecycle.is_finished(run) or lifecycle.read_config_field(run, "kind") != "online":
      raise lifecycle.RunError(f"online_eval: {run} is not a finished online run")
    if bool(lifecycle.read_config_field(run, "static")) != static:
      raise lifecycle.RunError(f"online_eval: {run} has static={not static}, expected {static}")
  rounds = lifecycle.read_json(online_run, ROUNDS)
  out = {"online": online_run, "static": static_run,
         "base": lifecycle.read_config_field(online_run, "base_lm")}
  out.update({f"round-{r['round']}": round_dir(online_run, r["round"], "ppo") for r in rounds})
  return out


def _round_records(run: str) -> list[dict]:
  return [{"round": r["round"], "pool": r["pool"]["total"],
           "pm_accuracy": r["pm"].get("eval/accuracy"), "ppo_gold_hh": r["ppo"].get("gold/hh")}
          for r in lifecycle.read_json(run, ROUNDS)]


def build_online_eval(cfg: OnlineEvalConfig, run_dir: str, inputs=None) -> lifecycle.Task:
  """online_vs_static.json and .npz (module docstring). inputs: left-padded prompts (N, P)."""
  del run_dir
  runs = eval_policies(cfg.online_run, cfg.static_run)
  gold_fn = pipeline.gold_fn(cfg.prompt_dataset)
  if gold_fn is None:
    raise lifecycle.RunError(f"online_eval needs a world with a gold reward, not {cfg.prompt_dataset}")
  prompts = inputs if inputs is not None else pipeline.load_prompts(
      cfg.prompt_dataset, cfg.prompt_split, cfg.prompt_len, cfg.tokenizer, cfg.data_dir,
      limit=cfg.num_prompts)
  prompts = np.repeat(np.asarray(prompts)[:cfg.num_prompts], cfg.samples_per_prompt, axis=0)
  policies = {name: lifecycle.load_model(d) for name, d in runs.items()}
  check_compatible(cfg, {"policy": policies["online"],
                         **{n: m for n, m in policies.items() if n != "online"}})

  def finish(_):
    arrays, means = {"prompts": prompts}, {}
    banned = pipeline.turn_marker_ids(cfg.prompt_dataset, cfg.tokenizer)
    for name, model in policies.items():
      reply = sample_replies(model, prompts, jax.random.key(cfg.seed),
                             max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                             banned_ids=banned)
      g = gold_fn(prompts, reply)
      arrays[f"response__{name}"] = reply
      arrays[f"gold__{name}"] = np.asarray(g[cfg.reward], np.float64)
      means[name] = float(np.mean(g[cfg.reward]))
    win = gold_win_rate(arrays["gold__online"], arrays["gold__static"], cfg.beta)
    elo = elo_difference(win)
    result = {"win_rate": win, "elo_diff": elo if math.isfinite(elo) else None, "gold": means,
              "gold_diff": means["online"] - means["static"],
              "rounds": _round_records(cfg.online_run),
              "static_rounds": _round_records(cfg.static_run),
              "static_pool": lifecycle.read_json(cfg.static_run, ROUNDS)[-1]["pool"]["total"],
              "online_run": os.path.basename(os.path.normpath(cfg.online_run)),
              "static_run": os.path.basename(os.path.normpath(cfg.static_run)),
              "labeller": {"reward": cfg.reward, "beta": cfg.beta},
              "num_replies": int(len(prompts))}
    summary = {"online_eval/win_rate": win, "online_eval/elo_diff": result["elo_diff"],
               "online_eval/gold_online": means["online"], "online_eval/gold_static": means["static"]}
    return lifecycle.Outputs(summary=summary, arrays={ARRAYS: arrays}, json_files={RESULT: result})

  return evaluation_task(finish)
