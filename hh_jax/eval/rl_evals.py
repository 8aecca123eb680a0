"""Evaluations around RL: best-of-N sampling against a PM, and Elo of policy snapshots.

best_of_n_eval: N replies per prompt from a base policy; for each n <= N the expected
score of the reply that the train PM ranks best among n (the unbiased order-statistic
estimator, `best_of_n.best_of_n_selected_score`), evaluated by the train PM, every test
PM and the gold reward, beside the KL bound log n - (n-1)/n.

elo_eval: the replies a PPO run stored at its snapshots (same prompts for every
snapshot) are compared pairwise by the gold labeler, P(i beats j) = sigmoid(beta (R_i -
R_j)) with R the gold HH reward, one sampled label per prompt and pair; Elo is fitted by
maximum likelihood (`elo.fit_elo`, anchored at the initial policy) and set beside the
PM-predicted Elo 174 x (mean train-PM score - initial).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hh_jax.data.world.labeler import preference_prob  # the gold labeler's own rule
from hh_jax.eval import best_of_n, elo
from hh_jax.train.rollout import make_pm_score_fn, make_sampler


def best_of_n_eval(policy, train_pm, test_pms: dict, prompts: np.ndarray, *, n_max: int = 64,
                   max_new_tokens: int = 16, temperature: float = 1.0, gold_fn=None, seed: int = 0,
                   chunk: int = 512, banned_ids: tuple[int, ...] = ()) -> dict:
  """Best-of-n curves (module docstring) as a JSON-able dict.

  policy, train_pm and the test_pms values are models: anything with `.graphdef` and
  `.params` (as a loaded run's model has). prompts: (P, T) left-padded tokens.
  """
  p = len(prompts)
  rep = np.repeat(prompts, n_max, axis=0)                                # (P*N, T)
  gen = make_sampler(policy.graphdef, max_new_tokens=max_new_tokens, temperature=temperature,
                     banned_ids=tuple(banned_ids))
  train_fn = make_pm_score_fn(train_pm.graphdef)
  test_fns = {name: make_pm_score_fn(m.graphdef) for name, m in test_pms.items()}
  scores = {"score_train": [], **{f"score_test/{n}": [] for n in test_pms}}
  gold = {}
  for i, start in enumerate(range(0, len(rep), chunk)):
    x = jnp.asarray(rep[start:start + chunk])
    if len(x) < chunk:                                                   # keep one shape
      x = jnp.concatenate([x, jnp.repeat(x[-1:], chunk - len(x), 0)])
    out = gen(policy.params, x, jax.random.fold_in(jax.random.key(seed), i))
    keep = min(chunk, len(rep) - start)
    scores["score_train"].append(np.asarray(train_fn(train_pm.params, x, out.response, out.mask))[:keep])
    for name, m in test_pms.items():
      scores[f"score_test/{name}"].append(np.asarray(test_fns[name](m.params, x, out.response,
                                                                    out.mask))[:keep])
    if gold_fn is not None:
      for k, v in gold_fn(np.asarray(x)[:keep], np.asarray(out.response)[:keep]).items():
        gold.setdefault(f"gold_{k}", []).append(np.asarray(v))
  scores = {k: np.concatenate(v).reshape(p, n_max) for k, v in {**scores, **gold}.items()}
  ns = [n for n in (1, 2, 4, 8, 16, 32, 64, 128, 256) if n <= n_max]
  result = {"n": ns, "kl_bound": [float(best_of_n.best_of_n_kl(n)) for n in ns],
            "num_prompts": p, "samples_per_prompt": n_max}
  for name, s in scores.items():
    curve = best_of_n.best_of_n_selected_score(scores["score_train"], s, ns)   # (P, K)
    result[name] = curve.mean(axis=0).tolist()
    result[f"{name}_base"] = float(s.mean())
  return result


def elo_eval(paths: list[str], *, reward: str = "hh", beta: float = 2.0, seed: int = 0) -> dict:
  """Gold-labeller Elo of a PPO run's snapshot files, in training order (module docstring)."""
  if len(paths) < 2:
    raise FileNotFoundError(f"Elo needs >= 2 policy snapshots (set snapshot_every), got {paths}")
  snaps = [np.load(p) for p in paths]
  gold_key = f"gold_{reward}"
  if gold_key not in snaps[0].files:
    raise KeyError(f"{paths[0]} has no {gold_key}: Elo from the gold labeler needs the synthetic world")
  rewards = np.stack([s[gold_key] for s in snaps])                      # (M, P)
  m = len(snaps)
  rng = np.random.default_rng(seed)
  wins = np.zeros((m, m))
  for i in range(m):
    for j in range(i + 1, m):
      p_i = preference_prob(rewards[i], rewards[j], beta)
      i_won = rng.random(len(p_i)) < p_i
      wins[i, j] += i_won.sum()
      wins[j, i] += (~i_won).sum()
  ratings, stderr = elo.fit_elo(wins, anchor=0, ridge=1e-3)
  score_train = np.array([s["score_train"].mean() for s in snaps])
  result = {
      "samples": [int(s["samples"]) for s in snaps],
      "elo_gold": np.asarray(ratings).tolist(), "elo_gold_stderr": np.asarray(stderr).tolist(),
      "elo_pm_predicted": (elo.elo_from_pm_delta(score_train - score_train[0])).tolist(),
      "gold_mean": rewards.mean(axis=1).tolist(), "score_train_mean": score_train.tolist(),
      "labeler": {"reward": reward, "beta": beta, "comparisons_per_pair": int(rewards.shape[1])},
  }
  return result
