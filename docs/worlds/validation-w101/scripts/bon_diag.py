"""Usage: bon_diag.py POLICY_RUN PM_RUN DATA_DIR.
Does the PM's ranking of the policy's own samples agree with gold? Per task: corr(PM, gold) within a
prompt's n samples and the gold gain of best-of-n (chosen by the PM) over a random sample."""
import sys, numpy as np, jax, jax.numpy as jnp
from hh_jax.train.lifecycle import load_model
from hh_jax.train.rollout import make_sampler, make_pm_score_fn
from hh_jax.data import pipeline
from hh_jax.data.world import vocab
pol, pm = load_model(sys.argv[1]), load_model(sys.argv[2]); n = 8
ds = "hh_synth/prompts-20000-s0-h90-w101"
P = pipeline.load_prompts(ds, "validation", 47, "auto", sys.argv[3], limit=512)
task = pipeline.world_task_names(P); gold = pipeline.gold_fn(ds)
sample = make_sampler(pol.graphdef, max_new_tokens=16, banned_ids=(vocab.HUMAN_ID, vocab.ASSISTANT_ID))
score = make_pm_score_fn(pm.graphdef)
S, G = [], []
for k in range(n):
  out = sample(pol.params, jnp.asarray(P), jax.random.key(k))
  S.append(np.asarray(score(pm.params, jnp.asarray(P), out.response, out.mask)))
  g = gold(P, np.asarray(out.response)); red = task == "harmful_request"
  G.append(np.where(red, g["harmless"], g["helpful"]))
S, G = np.stack(1 * np.array(S), 1), np.stack(G, 1)     # (N, n)
best = G[np.arange(len(G)), S.argmax(1)]
for t in list(np.unique(task)) + ["ALL-helpful"]:
  sel = (task == t) if t != "ALL-helpful" else task != "harmful_request"
  c = [np.corrcoef(S[i], G[i])[0, 1] for i in np.where(sel)[0] if S[i].std() > 0 and G[i].std() > 0]
  print(f"{t:16s} n={sel.sum():3d} gold(1 sample)={G[sel].mean():+.3f} best-of-{n}={best[sel].mean():+.3f} gain={best[sel].mean()-G[sel].mean():+.3f} oracle={G[sel].max(1).mean():+.3f} corr={np.mean(c):+.2f}")
