"""Zero-shot judge from a base LM: chosen preferred iff log p(chosen + EOS | ctx) > log p(rejected + EOS | ctx).
Validation comparisons of world 101, by task."""
import sys, numpy as np, jax, jax.numpy as jnp
from hh_jax import models
from hh_jax.train.lifecycle import load_model
from hh_jax.data.world import corpus, vocab
from hh_jax.special_tokens import EOS_ID, PAD_ID
TOK = vocab.WorldTokenizer()
def rows(ctx, rep, T=64):
  c, r = TOK.encode(ctx), TOK.encode(rep) + [EOS_ID]
  ids = (c + r)[-T:]; n_r = min(len(r), len(ids))
  x = np.full(T, PAD_ID, np.int32); x[:len(ids)] = ids
  m = np.zeros(T, bool); m[len(ids) - n_r:len(ids)] = True
  return x, m
def logp(model, X, M):
  out = models.apply(model.graphdef, model.params, jnp.asarray(X))
  lp = jax.nn.log_softmax(out.logits[:, :-1], -1)
  tok = jnp.asarray(X)[:, 1:]
  lt = jnp.take_along_axis(lp, tok[..., None], -1)[..., 0]
  return np.asarray((lt * jnp.asarray(M)[:, 1:]).sum(1))
cs = corpus.comparisons("mix", 0, 4000, "validation", world_seed=101)
C = cs.columns; pc = np.asarray(C["p_chosen"])
for d in sys.argv[1:]:
  model = load_model(d)
  xc, mc = zip(*[rows(c, r) for c, r in zip(C["context"], C["chosen"])])
  xr, mr = zip(*[rows(c, r) for c, r in zip(C["context"], C["rejected"])])
  lc = np.concatenate([logp(model, np.stack(xc[i:i+500]), np.stack(mc[i:i+500])) for i in range(0, 4000, 500)])
  lr = np.concatenate([logp(model, np.stack(xr[i:i+500]), np.stack(mr[i:i+500])) for i in range(0, 4000, 500)])
  ok = (lc > lr) + 0.5 * (lc == lr)
  task = np.array(C["task"])
  print(d.split("/")[-1], "all %.3f" % ok.mean(), " ".join(f"{t[:6]}={ok[task == t].mean():.3f}" for t in np.unique(task)), flush=True)
