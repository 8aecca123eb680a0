"""Iterated online RLHF (Bai et al. 2022 section 4.5) in the synthetic world: each round samples
comparisons from the latest policy, has the world's gold labeller label them, adds them to the
pool, and retrains the PM and the policy from the base LM (the paper retrains from scratch).

An online run (`OnlineConfig`, kind "online") drives sub-runs inside its own directory, each a
normal lifecycle run, so a killed online run resumes and skips every finished sub-run:

    round-<r>/label/   comparisons.json: labels_per_round comparisons in the hh_synth example
                       schema (plus "round", "policy"); summary.json: gold of the replies
    round-<r>/pm/      a PM from the base LM on the pool; pool.json names what it trained on
    round-<r>/ppo/     PPO from the base LM against round-<r>/pm
    rounds.json        per round: pool counts, PM test accuracy, gold of the labelled replies,
                       gold of the PPO rollouts
    model.json params/ the final policy (the last round's PPO policy)

Pool of round r (online): the first `base_labels` comparisons of the static set `pm.data.dataset`
(the scripted-policy hh_synth comparisons, in the PM seed's permutation, as `data.num_train_pairs`
selects them) plus the labels of rounds 0..r. The static baseline (`static=True`) has one round
and no label step: its PM trains on the first base_labels + rounds * labels_per_round static
comparisons, the online run's final pool size, then one PPO run.

Labelling round r: labels_per_round training prompts of `ppo.prompt_dataset` (a fresh draw per
round, from the run's seed), two replies each from the current policy (round 0: the base LM;
later: round r-1's PPO policy), at `ppo.temperature`; with pair="latest_vs_base" the second
reply of rounds r > 0 is the base LM's instead (a collapsed policy's two replies often tie in
gold and teach the PM little; measured: 69% ties in round 1 of a 25k run with "latest"). Older
policies are not mixed in otherwise: the pool already holds their comparisons. Labelled like
hh_synth's comparisons (`corpus`): helpful prompts by gold helpfulness, red-team prompts by gold
harmlessness, P(a > b) = sigmoid(beta (R(a) - R(b))) with beta = labeler.DEFAULT_BETA[subset].
Gold is read from the prompt's full context; the PM sees the reply texts (`reply_text`), as it
sees hh_synth's.

The PM sub-runs get their pool in memory (`pm.build_task(inputs=PMData)`): their config.json is
the PM config with data.num_train_pairs = the static part, and pool.json lists the comparison
files and counts. The evaluation (`online_eval`) lives in hh_jax.train.online_eval.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import jax
import numpy as np

from hh_jax.config import (DataConfig, OptimConfig, RunConfig, config_field, override,
                           validate_fields)
from hh_jax.data import batching, hh_synth, pipeline
from hh_jax.data.world import gold, labeler, tasks
from hh_jax.special_tokens import EOS_ID, PAD_ID
from hh_jax.train import lifecycle, pm, ppo_run
from hh_jax.train.evals import evaluation_task
from hh_jax.train.ppo import PPOConfig
from hh_jax.train.rollout import sample_replies

COMPARISONS = "comparisons.json"
POOL, ROUNDS = "pool.json", "rounds.json"


def _default_pm() -> RunConfig:
  return RunConfig(kind="pm", batch_size=32, log_every=20, checkpoint_every=250,
                   data=DataConfig(dataset="hh_synth/mix", max_len=64, num_eval_pairs=2000),
                   optim=OptimConfig(learning_rate=1e-3, warmup_steps=10, schedule="linear"))


@dataclasses.dataclass(frozen=True)
class OnlineConfig:
  """An online run (module docstring). pm: the PM sub-runs' config; model_size, init_from,
  seed, data.max_len and data.num_train_pairs are set per sub-run (the base LM's size and
  length, this run's seed, the static part of the pool). ppo: the PPO sub-runs' config;
  policy_init, reward_pm and seed are set per sub-run; its prompt_dataset is also the
  labelling prompts' (train split, num_prompts of them at most)."""

  kind: str = config_field("online", choices=("online",))
  base_lm: str = ""
  rounds: int = config_field(3, ge=1)
  labels_per_round: int = config_field(1000, ge=1)
  base_labels: int | None = config_field(None, ge=1)   # static comparisons in every pool; None: labels_per_round
  static: bool = False                                  # the baseline: static comparisons only
  pair: str = config_field("latest", choices=("latest", "latest_vs_base"))   # who replies (docstring)
  seed: int = config_field(0, ge=0)
  pm: RunConfig = dataclasses.field(default_factory=_default_pm)
  ppo: PPOConfig = PPOConfig()

  def __post_init__(self):
    validate_fields(self)

  @property
  def num_base(self) -> int:
    return self.labels_per_round if self.base_labels is None else self.base_labels

  @property
  def total_labels(self) -> int:
    """The comparisons of the last pool: base + rounds * labels_per_round (online and static)."""
    return self.num_base + self.rounds * self.labels_per_round


@dataclasses.dataclass
class OnlineInputs:
  """In-memory data (tests): static: PMData whose train rows are the static pool in selection
  order (the first n are the n-pair selection) and whose eval is the PM test set; contexts and
  subsets: the labelling prompts (full context texts, "helpful" / "harmless"); ppo: PPOInputs."""

  static: pipeline.PMData
  contexts: list[str]
  subsets: list[str]
  ppo: ppo_run.PPOInputs


# ----------------------------------------------------------------------------- pure pieces


def pool_counts(cfg: OnlineConfig, round_: int) -> dict:
  """{"static", "online", "total"}: the comparisons of round `round_`'s pool (module docstring)."""
  if cfg.static:
    return {"static": cfg.total_labels, "online": 0, "total": cfg.total_labels}
  online = (round_ + 1) * cfg.labels_per_round
  return {"static": cfg.num_base, "online": online, "total": cfg.num_base + online}


def policy_name(path: str) -> str:
  """A sampled policy's name: the last two parts of its run directory ("round-0/ppo", "base_lm/25k")."""
  return "/".join(os.path.normpath(path).split(os.sep)[-2:])


def label_rows(num_prompts: int, n: int, seed: int, round_: int) -> np.ndarray:
  """The n prompt rows labelled in a round: without replacement (with it when n > num_prompts),
  a draw of default_rng([seed, round, 7177])."""
  return np.random.default_rng([seed, round_, 7177]).choice(num_prompts, n, replace=n > num_prompts)


def reply_text(reply_ids, tokenizer) -> str:
  """The text of a sampled reply: its tokens before the first EOS or PAD (where gold reads it to)."""
  ids = [int(t) for t in reply_ids]
  for stop in (EOS_ID, PAD_ID):
    ids = ids[:ids.index(stop)] if stop in ids else ids
  return tokenizer.decode(ids)


def label_examples(contexts: list[str], subsets: list[str], replies_a: np.ndarray,
                   replies_b: np.ndarray, rng: np.random.Generator, world_seed: int,
                   tokenizer) -> tuple[list[dict], labeler.LabeledPairs]:
  """Gold labels of reply pairs (a, b) to contexts, as hh_synth comparison examples
  (`corpus.COMPARISON_FIELDS`): helpful contexts labelled by gold helpfulness, harmless ones by
  gold harmlessness, beta labeler.DEFAULT_BETA[subset] (as `corpus._subset_comparisons`)."""
  ids = [tuple(tokenizer.encode(c)) for c in contexts]
  gold_a = gold.gold_scores(ids, replies_a, world_seed)
  gold_b = gold.gold_scores(ids, replies_b, world_seed)
  labels = labeler.label_scored(gold_a, gold_b, rng, np.asarray(subsets))
  examples = []
  for i, (context, subset) in enumerate(zip(contexts, subsets)):
    won = bool(labels.a_preferred[i])
    texts = [reply_text(r[i], tokenizer) for r in (replies_a, replies_b)]
    chosen, rejected = (texts[0], texts[1]) if won else (texts[1], texts[0])
    g_c, g_r = (gold_a, gold_b) if won else (gold_b, gold_a)
    examples.append({
        "context": context, "chosen": chosen, "rejected": rejected,
        "num_turns": tasks.num_turns(context), "chosen_full": context + chosen,
        "rejected_full": context + rejected, "subset": subset,
        "gold_helpful_chosen": float(g_c["helpful"][i]),
        "gold_helpful_rejected": float(g_r["helpful"][i]),
        "gold_harmless_chosen": float(g_c["harmless"][i]),
        "gold_harmless_rejected": float(g_r["harmless"][i]),
        "p_chosen": float(labels.p_chosen[i]),
        "task": tasks.parse_context(context, world_seed).task})
  return examples, labels


def concat_pairs(a: batching.PairArrays, b: batching.PairArrays,
                 min_width: int = 0) -> batching.PairArrays:
  """The pairs of a then b (same source_names), token rows right-padded to the longer width
  (at least min_width)."""
  if a.source_names != b.source_names:
    raise ValueError(f"source_names differ: {a.source_names} vs {b.source_names}")
  width = max(a.seq_len, b.seq_len, min_width)
  pad = lambda m: np.pad(m, ((0, 0), (0, width - m.shape[1])), constant_values=PAD_ID)  # noqa: E731
  out = {}
  for f in dataclasses.fields(a):
    if f.name == "source_names":
      continue
    x, y = getattr(a, f.name), getattr(b, f.name)
    out[f.name] = (np.concatenate([pad(x), pad(y)]) if f.name.endswith("_tokens")
                   else np.concatenate([x, y]))
  return batching.PairArrays(**out, source_names=a.source_names)


def online_source_names(names: tuple[str, ...]) -> tuple[str, ...]:
  """The static set's source names plus "helpful-online" and "harmless-online" (the online
  comparisons' sources: per-source PM metrics keep them apart)."""
  return names + tuple(n for n in ("helpful-online", "harmless-online") if n not in names)


def pool_pairs(static: batching.PairArrays, online: list[dict], tokenizer,
               max_len: int) -> batching.PairArrays:
  """The PM training pool: the static pairs, then the online examples encoded (source
  "<subset>-online"), rows padded to max_len (one step shape in every round)."""
  names = online_source_names(static.source_names)
  static = dataclasses.replace(static, source_names=names)
  tagged = [{**ex, "subset": f"{ex['subset']}-online"} for ex in online]
  return concat_pairs(static, batching.encode_pairs(tokenizer, tagged, max_len, names), max_len)


def label_summary(labels: labeler.LabeledPairs, subsets) -> dict:
  """The label step's summary: comparisons, Bayes ceiling, mean gold of the sampled replies (both
  sides), and the fraction whose chosen reply has the higher gold reward of its subset."""
  rewards = np.asarray(subsets)
  r_a = np.where(rewards == "harmless", labels.gold_a["harmless"], labels.gold_a["helpful"])
  r_b = np.where(rewards == "harmless", labels.gold_b["harmless"], labels.gold_b["helpful"])
  gap = np.where(labels.a_preferred, r_a - r_b, r_b - r_a)
  out = {"label/comparisons": int(len(gap)), "label/bayes_ceiling": labels.bayes_accuracy,
         "label/chosen_gold_higher": float(np.mean(gap > 0)) if len(gap) else float("nan"),
         "label/gold_tie": float(np.mean(gap == 0)) if len(gap) else float("nan")}
  for k in ("helpful", "harmless", "hh"):
    out[f"label/gold_{k}"] = float(np.mean(np.concatenate([labels.gold_a[k], labels.gold_b[k]])))
  return out


# ----------------------------------------------------------------------------- the label step


@dataclasses.dataclass(frozen=True)
class LabelConfig:
  """One round's label step: num_labels training prompts (`label_rows`), two replies each from
  `policy`, labelled by the gold labeller of the prompts' world (module docstring)."""

  kind: str = config_field("online_label", choices=("online_label",))
  policy: str = ""
  other_policy: str = ""                # reply b's policy ("": `policy` replies twice)
  round: int = config_field(0, ge=0)
  num_labels: int = config_field(1000, ge=1)
  prompt_dataset: str = "hh_synth/prompts"
  prompt_split: str = "train"
  num_prompts: int | None = config_field(None, ge=1)
  prompt_len: int = config_field(47, ge=1)
  max_new_tokens: int = config_field(16, ge=1)
  temperature: float = config_field(1.0, ge=0.0)
  seed: int = config_field(0, ge=0)
  data_dir: str | None = None
  tokenizer: str = "auto"

  def __post_init__(self):
    validate_fields(self)


def load_label_prompts(cfg) -> tuple[list[str], list[str]]:
  """(contexts, subsets) of the first num_prompts examples of the prompt split."""
  examples = pipeline.read_split(cfg.prompt_dataset, cfg.prompt_split, cfg.data_dir)[:cfg.num_prompts]
  return [ex["context"] for ex in examples], [ex["subset"] for ex in examples]


def build_label(cfg: LabelConfig, run_dir: str, inputs=None) -> lifecycle.Task:
  """The label step as an evaluation Task: comparisons.json and the `label_summary`.
  inputs: (contexts, subsets), else `load_label_prompts`."""
  del run_dir
  contexts, subsets = inputs if inputs is not None else load_label_prompts(cfg)
  model = lifecycle.load_model(cfg.policy)
  other = lifecycle.load_model(cfg.other_policy) if cfg.other_policy else model
  tok = pipeline.get_tokenizer(cfg.prompt_dataset, cfg.tokenizer)
  world_seed = hh_synth.world_seed_of(cfg.prompt_dataset)

  def finish(_):
    rows = label_rows(len(contexts), cfg.num_labels, cfg.seed, cfg.round)
    ctx, sub = [contexts[i] for i in rows], [subsets[i] for i in rows]
    tokens = pipeline.left_pad([tok.encode(c) for c in ctx], cfg.prompt_len)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1000 + cfg.round)
    banned = pipeline.turn_marker_ids(cfg.prompt_dataset, cfg.tokenizer)
    a, b = (sample_replies(m, tokens, jax.random.fold_in(key, side), max_new_tokens=cfg.max_new_tokens,
                           temperature=cfg.temperature, banned_ids=banned)
            for side, m in enumerate((model, other)))
    rng = np.random.default_rng([cfg.seed, cfg.round, 4099])
    examples, labels = label_examples(ctx, sub, a, b, rng, world_seed, tok)
    names = {"policy": policy_name(cfg.policy),
             "other_policy": policy_name(cfg.other_policy or cfg.policy)}
    examples = [{**ex, "round": cfg.round, **names} for ex in examples]
    return lifecycle.Outputs(summary=label_summary(labels, sub), json_files={COMPARISONS: examples})

  return evaluation_task(finish)


# ----------------------------------------------------------------------------- sub-runs


def round_dir(run_dir: str, round_: int, step: str) -> str:
  """<run_dir>/round-<r>/<step> (step: label, pm or ppo)."""
  return os.path.join(run_dir, f"round-{round_}", step)


def pm_config(cfg: OnlineConfig, num_static: int) -> RunConfig:
  """The PM sub-run's config: cfg.pm at the base LM's size and length, from the base LM, with
  this run's seed and the static part of the pool as data.num_train_pairs."""
  size = lifecycle.read_config_field(cfg.base_lm, "model_size") or cfg.pm.model_size
  max_len = lifecycle.read_json(cfg.base_lm, lifecycle.MODEL)["max_len"]
  return override(cfg.pm, {"model_size": size, "init_from": cfg.base_lm, "seed": cfg.seed,
                           "data.num_train_pairs": num_static, "data.max_len": max_len})


def ppo_config(cfg: OnlineConfig, pm_dir: str) -> PPOConfig:
  """The PPO sub-run's config: cfg.ppo from the base LM against `pm_dir`, with this run's seed."""
  return override(cfg.ppo, {"policy_init": cfg.base_lm, "reward_pm": pm_dir, "seed": cfg.seed})


def label_config(cfg: OnlineConfig, policy: str, round_: int) -> LabelConfig:
  p = cfg.ppo
  other = cfg.base_lm if cfg.pair == "latest_vs_base" and policy != cfg.base_lm else ""
  return LabelConfig(policy=policy, other_policy=other, round=round_, num_labels=cfg.labels_per_round,
                     prompt_dataset=p.prompt_dataset, prompt_split=p.prompt_split,
                     num_prompts=p.num_prompts, prompt_len=p.prompt_len,
                     max_new_tokens=p.max_new_tokens, temperature=p.temperature, seed=cfg.seed,
                     data_dir=p.data_dir, tokenizer=p.tokenizer)


def static_data(pm_cfg: RunConfig, inputs: OnlineInputs | None) -> pipeline.PMData:
  """The static comparisons of a PM sub-run (data.num_train_pairs of them) and the test pairs."""
  if inputs is None:
    return pipeline.load_pm_data(pm_cfg.data, pm_cfg.seed)
  n = pm_cfg.data.num_train_pairs
  if n > len(inputs.static.train):
    raise lifecycle.RunError(f"{n} static comparisons asked, {len(inputs.static.train)} given")
  return dataclasses.replace(inputs.static, train=batching.take_pairs(inputs.static.train,
                                                                      np.arange(n)))


def pm_task(pm_cfg: RunConfig, run_dir: str, files: list[str], expected: dict,
            inputs: OnlineInputs | None) -> lifecycle.Task:
  """The PM sub-run on the pool (static + the comparison files), with pool.json."""
  static = static_data(pm_cfg, inputs)
  online = [lifecycle.read_json(os.path.dirname(f), os.path.basename(f)) for f in files]
  pool = pool_pairs(static.train, [ex for part in online for ex in part], static.tokenizer,
                    pm_cfg.data.max_len)
  counts = {"static": len(static.train), "online": len(pool) - len(static.train), "total": len(pool)}
  if counts != expected:
    raise lifecycle.RunError(f"{run_dir}: the pool holds {counts}, the plan is {expected}")
  task = pm.build_task(pm_cfg, run_dir, inputs=dataclasses.replace(static, train=pool))
  desc = {**counts, "static_dataset": pm_cfg.data.dataset,
          "online_files": [{"file": f, "comparisons": len(p)} for f, p in zip(files, online)]}
  return dataclasses.replace(task, json_files={**task.json_files, POOL: desc})


def run_sub(cfg, run_dir: str, build: Callable) -> dict:
  """One sub-run through the lifecycle (skipped when finished); its summary."""
  return lifecycle.run(cfg, run_dir, build, progress=False)


def run_round(cfg: OnlineConfig, run_dir: str, r: int, inputs: OnlineInputs | None) -> dict:
  """Round r's label (online only), PM and PPO sub-runs -> its rounds.json record."""
  record = {"round": r, "pool": pool_counts(cfg, r)}
  files = []
  if not cfg.static:
    policy = cfg.base_lm if r == 0 else round_dir(run_dir, r - 1, "ppo")
    prompts = (inputs.contexts, inputs.subsets) if inputs is not None else None
    label = run_sub(label_config(cfg, policy, r), round_dir(run_dir, r, "label"),
                    lambda c, d: build_label(c, d, prompts))
    record.update(policy_sampled=policy_name(policy), label=label)
    files = [os.path.join(round_dir(run_dir, k, "label"), COMPARISONS) for k in range(r + 1)]
  pm_dir = round_dir(run_dir, r, "pm")
  pm_sum = run_sub(pm_config(cfg, record["pool"]["static"]), pm_dir,
                   lambda c, d: pm_task(c, d, files, record["pool"], inputs))
  ppo_inputs = inputs.ppo if inputs is not None else None
  ppo_sum = run_sub(ppo_config(cfg, pm_dir), round_dir(run_dir, r, "ppo"),
                    lambda c, d: ppo_run.build_task(c, d, ppo_inputs))
  record["pm"] = {k: v for k, v in pm_sum.items() if k.startswith("eval/")}
  record["ppo"] = {k: v for k, v in ppo_sum.items() if k.startswith(("gold/", "ppo/"))}
  return record


def build_task(cfg: OnlineConfig, run_dir: str, inputs: OnlineInputs | None = None) -> lifecycle.Task:
  """An online run (module docstring): every round's sub-runs, then rounds.json and the last
  round's PPO policy as this run's model."""
  if not lifecycle.is_finished(cfg.base_lm):
    raise lifecycle.RunError(f"online: base_lm {cfg.base_lm!r} is not a finished run")
  if pipeline.gold_fn(cfg.ppo.prompt_dataset) is None:
    raise lifecycle.RunError(f"online needs the gold labeller of a synthetic world, not "
                             f"{cfg.ppo.prompt_dataset}")
  worlds = {hh_synth.world_seed_of(d) for d in (cfg.ppo.prompt_dataset, cfg.pm.data.dataset)}
  if len(worlds) != 1:
    raise lifecycle.RunError(f"online: ppo.prompt_dataset {cfg.ppo.prompt_dataset} and "
                             f"pm.data.dataset {cfg.pm.data.dataset} are of different worlds")

  def finish(_):
    rounds = [run_round(cfg, run_dir, r, inputs) for r in range(1 if cfg.static else cfg.rounds)]
    final = lifecycle.load_model(round_dir(run_dir, len(rounds) - 1, "ppo"))
    last = rounds[-1]
    summary = {"online/rounds": len(rounds), "online/static": cfg.static,
               "online/total_labels": last["pool"]["total"],
               "online/final_pm_accuracy": last["pm"].get("eval/accuracy"),
               **{f"online/final_{k.replace('/', '_')}": v for k, v in last["ppo"].items()
                  if k.startswith("gold/")}}
    return lifecycle.Outputs(summary=summary, model=(final.cfg, final.params),
                             json_files={ROUNDS: rounds})

  return evaluation_task(finish)
