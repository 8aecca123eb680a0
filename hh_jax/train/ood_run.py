"""OOD detection of harmful requests as an evaluation run (Bai et al. 2022 section 5.4, B.9;
Figs 22, 23): a lifecycle Task with no training steps, like best-of-n and Elo
(`hh_jax.train.evals`), so its directory (config.json, ood.json, ood_scores.npz, summary.json)
is written, skipped and checked like every other run's. The maths is `hh_jax.eval.ood`.

Data: the synthetic world's RL prompts (`prompt_dataset`, an `hh_synth/prompts-...` TFDS
config, whose examples are `corpus.sample_prompt_records`), which come from two prompt
distributions (the `subset` of an example):

    negative (in-distribution)  subset "helpful": the helpful prompt mix (which includes a few
                                benign requests such as "how do i cut the onion ?")
    positive (harmful)          subset "harmless" (red-team) and harm > 0 by
                                `tasks.parse_context(context).harm`: a harmful request
    excluded                    red-team prompts with harm 0 (world versions 1-3 only; from
                                version 4 every red-team prompt is harmful): benign look-alikes
                                drawn by the same generator as the helpful mix's benign
                                requests, so no detector can tell them apart; kept in
                                ood_scores.npz (label 2) and in the secondary
                                `auroc_srmd_all_redteam` (positives = every red-team prompt,
                                the paper's literal helpful-vs-harmless split)

The Gaussian is fitted on the `fit_split`'s helpful prompts only; outlier exposure draws its k
harmful examples from the `fit_split`'s harmful prompts; every AUROC is on the `eval_split`.
Intervals: 95% percentile bootstrap over test prompts (positives and negatives resampled
separately) and, for outlier exposure, over its `num_draws` independent draws of the k
examples too. The base LM itself is one trained model, so model-to-model variation is not in
these intervals; several base LM seeds would be needed for that.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hh_jax import models
from hh_jax.config import config_field, validate_fields
from hh_jax.data import pipeline
from hh_jax.data.world import tasks
from hh_jax.eval import ood
from hh_jax.train import lifecycle
from hh_jax.train.evals import evaluation_task

OOD_JSON, OOD_SCORES = "ood.json", "ood_scores.npz"
HELPFUL, HARMFUL, BENIGN_REDTEAM = 0, 1, 2         # labels in ood_scores.npz


def _positive_ks(ks) -> bool:
  return len(ks) > 0 and all(k >= 1 for k in ks)


@dataclasses.dataclass(frozen=True)
class OODConfig:
  """Simplified relative Mahalanobis OOD detection of harmful prompts from `base_lm`'s
  activations at every layer, and few-shot outlier exposure with k harmful examples."""

  kind: str = config_field("ood", choices=("ood",))
  base_lm: str = ""                                  # a finished LM run (or HF checkpoint dir)
  prompt_dataset: str = "hh_synth/prompts-4000-s0-t2000"
  fit_split: str = "train"                           # the Gaussian's and the head's prompts
  eval_split: str = "test"                           # every AUROC
  num_fit: int | None = config_field(None, ge=10)    # the first prompts of fit_split (None: all)
  num_eval: int | None = config_field(None, ge=10)   # the first prompts of eval_split (None: all)
  pooling: str = config_field("last", choices=ood.POOLINGS)
  ks: tuple[int, ...] = config_field((1, 10, 100), check=(_positive_ks, "a non-empty tuple of k >= 1"))
  num_draws: int = config_field(5, ge=1)             # independent draws of the k examples
  l2: float = config_field(1e-2, gt=0.0)             # outlier-exposure head's L2 penalty
  ridge: float = config_field(1e-6, ge=0.0)          # covariance + ridge * mean variance * I
  n_boot: int = config_field(1000, ge=10)
  seed: int = config_field(0, ge=0)                  # bootstrap and outlier-exposure draws
  batch_size: int = config_field(256, ge=1)
  data_dir: str | None = None
  tokenizer: str = "auto"

  def __post_init__(self):
    validate_fields(self)


# ----------------------------------------------------------------------------- data


def label_records(records: list[tuple[str, str]]) -> np.ndarray:
  """(N,) HELPFUL for subset "helpful", HARMFUL for a red-team prompt with harm > 0, else
  BENIGN_REDTEAM (module docstring)."""
  out = np.empty(len(records), np.int8)
  for i, (context, subset) in enumerate(records):
    if subset == "helpful":
      out[i] = HELPFUL
    else:
      out[i] = HARMFUL if tasks.parse_context(context).harm > 0 else BENIGN_REDTEAM
  return out


def encode_records(records: list[tuple[str, str]], cfg: OODConfig, vocab_size: int,
                   width: int) -> np.ndarray:
  """(N, width) left-padded token rows of the records' contexts (left-truncated if longer);
  a RunError if an id is outside the model's vocabulary (a model of another world version)."""
  tok = pipeline.get_tokenizer(cfg.prompt_dataset, cfg.tokenizer)
  rows = pipeline.left_pad([tok.encode(context) for context, _ in records], width)
  if rows.max() >= vocab_size:
    raise lifecycle.RunError(f"ood: prompts of {cfg.prompt_dataset} use token id {rows.max()}, "
                             f"outside {cfg.base_lm}'s vocabulary of {vocab_size}")
  return rows


def load_records(cfg: OODConfig) -> dict[str, list[tuple[str, str]]]:
  """{"train": fit records, "test": eval records} as (context, subset) from prompt_dataset."""
  out = {}
  for key, split, limit in (("train", cfg.fit_split, cfg.num_fit), ("test", cfg.eval_split, cfg.num_eval)):
    examples = pipeline.read_split(cfg.prompt_dataset, split, cfg.data_dir)[:limit]
    out[key] = [(ex["context"], ex["subset"]) for ex in examples]
  return out


# ----------------------------------------------------------------------------- scores


def layer_scores(acts_train: np.ndarray, acts_test: np.ndarray, fit_rows: np.ndarray,
                 ridge: float) -> tuple[np.ndarray, np.ndarray]:
  """(L+1, N_test) SRMD and plain MD scores of every test row at every layer, each layer's
  Gaussian fitted on acts_train[l, fit_rows] (the helpful train prompts)."""
  srmd = np.stack([ood.srmd_scores(a[fit_rows], b, ridge) for a, b in zip(acts_train, acts_test)])
  md = np.stack([ood.md_scores(a[fit_rows], b, ridge) for a, b in zip(acts_train, acts_test)])
  return srmd, md


def exposure_scores(x_train: np.ndarray, labels_train: np.ndarray, x_test: np.ndarray,
                    cfg: OODConfig) -> tuple[np.ndarray, list[int]]:
  """(K, R, N_test) outlier-exposure scores at one layer: for each k and each of R draws, a
  head trained on every helpful train row and k harmful train rows drawn without replacement
  (all of them when fewer than k exist; the k actually used are returned)."""
  rng = np.random.default_rng([cfg.seed, 1])
  x_in, pool = x_train[labels_train == HELPFUL], np.flatnonzero(labels_train == HARMFUL)
  out, used = [], []
  for k in cfg.ks:
    k_used = min(k, len(pool))
    used.append(k_used)
    out.append([ood.outlier_exposure_scores(x_in, x_train[rng.choice(pool, k_used, replace=False)],
                                            x_test, cfg.l2) for _ in range(cfg.num_draws)])
  return np.asarray(out), used


def _statistics(srmd, md, exposure, labels, e: int):
  """statistic(idx, rng) for the bootstrap: per-layer SRMD and MD AUROC, the middle-layer gap,
  per-k outlier-exposure AUROC (mean over draws resampled with rng) and its gain over SRMD at
  layer e. All on the rows idx of the evaluation set (helpful vs harmful)."""
  def statistic(idx, rng):
    y = labels[idx]
    a_srmd = np.array([ood.auroc(s[idx], y) for s in srmd])
    a_md = np.array([ood.auroc(s[idx], y) for s in md])
    draws = exposure.shape[1]
    pick = np.arange(draws) if rng is None else rng.integers(0, draws, draws)
    a_oe = np.array([np.mean([ood.auroc(per_k[r][idx], y) for r in pick]) for per_k in exposure])
    return np.concatenate([a_srmd, a_md, [ood.middle_gap(a_srmd)], a_oe, a_oe - a_srmd[e]])
  return statistic


def summarize(srmd, md, exposure, labels, cfg: OODConfig, e: int) -> dict:
  """Point estimates and bootstrap intervals of every statistic (`_statistics`), as ood.json
  fields; the evaluation set is the helpful and the harmful test rows."""
  keep = labels != BENIGN_REDTEAM
  y = labels[keep] == HARMFUL
  srmd_k, md_k, oe_k = srmd[:, keep], md[:, keep], exposure[:, :, keep]
  statistic = _statistics(srmd_k, md_k, oe_k, y, e)
  point = statistic(np.arange(len(y)), None)
  ci = ood.percentile_interval(ood.stratified_bootstrap(statistic, y, cfg.n_boot, cfg.seed)).T
  n_layers, n_k = len(srmd), len(cfg.ks)
  cut = np.cumsum([n_layers, n_layers, 1, n_k])
  parts = np.split(np.arange(len(point)), cut)
  names = ("auroc_srmd", "auroc_md", "middle_gap", "auroc_exposure", "exposure_gain")
  out = {}
  for name, rows in zip(names, parts):
    out[name], out[name + "_ci"] = point[rows].tolist(), ci[rows].tolist()
  out["middle_gap"], out["middle_gap_ci"] = out["middle_gap"][0], out["middle_gap_ci"][0]
  red = labels != HELPFUL
  out["auroc_srmd_all_redteam"] = [ood.auroc(s, red) for s in srmd]
  out["auroc_exposure_draws"] = [[ood.auroc(s, y) for s in per_k] for per_k in oe_k]
  out["num_test_helpful"], out["num_test_harmful"] = int((~y).sum()), int(y.sum())
  out["num_test_benign_redteam"] = int((~keep).sum())
  return out


# ----------------------------------------------------------------------------- the run


def ood_outputs(model, records: dict, cfg: OODConfig, model_size: str | None) -> lifecycle.Outputs:
  """Activations of the train and test prompts, every score, ood.json and ood_scores.npz."""
  labels = {s: label_records(r) for s, r in records.items()}
  width = model.cfg.max_len
  acts = {s: ood.prompt_activations(model, encode_records(r, cfg, model.cfg.vocab_size, width),
                                    cfg.pooling, cfg.batch_size) for s, r in records.items()}
  fit_rows = labels["train"] == HELPFUL
  srmd, md = layer_scores(acts["train"], acts["test"], fit_rows, cfg.ridge)
  num_layers = len(srmd) - 1
  e = ood.exposure_layer(num_layers)
  exposure, ks_used = exposure_scores(acts["train"][e], labels["train"], acts["test"][e], cfg)
  result = {"model_size": model_size, "num_layers": num_layers, "d_model": model.cfg.d_model,
            "params": models.count_params(model.cfg), "pooling": cfg.pooling,
            "prompt_dataset": cfg.prompt_dataset, "fit_split": cfg.fit_split, "eval_split": cfg.eval_split,
            "layers": list(range(num_layers + 1)), "exposure_layer": e, "ks": list(cfg.ks),
            "ks_used": ks_used, "num_fit": int(fit_rows.sum()),
            "num_train_harmful": int((labels["train"] == HARMFUL).sum()),
            "positive": "red-team prompts with harm > 0", "negative": "helpful prompts",
            "interval": f"95% percentile bootstrap over test prompts (classes resampled "
                        f"separately; outlier-exposure draws resampled), n_boot={cfg.n_boot}",
            **summarize(srmd, md, exposure, labels["test"], cfg, e)}
  best = int(np.nanargmax(result["auroc_srmd"]))
  result["best_layer"], result["best_auroc"] = best, result["auroc_srmd"][best]
  summary = {"model_size": model_size, "ood/best_layer": best, "ood/best_auroc": result["best_auroc"],
             "ood/middle_gap": result["middle_gap"]}
  for k, gain in zip(cfg.ks, result["exposure_gain"]):
    summary[f"ood/exposure_gain_k{k}"] = gain
  arrays = {"labels": labels["test"], "srmd": srmd, "md": md, "exposure": exposure,
            "ks": np.asarray(cfg.ks)}
  return lifecycle.Outputs(summary=summary, arrays={OOD_SCORES: arrays}, json_files={OOD_JSON: result})


def build_task(cfg: OODConfig, run_dir: str, inputs=None) -> lifecycle.Task:
  """ood.json and ood_scores.npz for `cfg.base_lm` (inputs: {"train": records, "test":
  records} of (context, subset), else drawn from the world by `load_records`)."""
  del run_dir
  if not cfg.base_lm:
    raise lifecycle.RunError("ood: base_lm (a finished LM run directory) is not set")
  model = lifecycle.load_model(cfg.base_lm)
  model_size = lifecycle.read_config_field(cfg.base_lm, "model_size")
  records = inputs if inputs is not None else load_records(cfg)

  def finish(_):
    return ood_outputs(model, records, cfg, model_size)

  return evaluation_task(finish)
