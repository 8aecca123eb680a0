"""Usage: pertask.py "GLOB_OF_PM_RUN_DIRS": accuracy by task of finished PM runs on their eval split."""
import sys, glob, numpy as np, json
import tensorflow_datasets as tfds
from hh_jax.data import hh_synth  # registers the builder
def load(d):
  cfg = json.load(open(d + "/config.json"))["data"]
  ds = tfds.data_source(cfg["dataset"], split=cfg["eval_split"], data_dir=cfg["data_dir"])
  return [ds[i] for i in range(len(ds))]
rows = None
for d in sorted(glob.glob(sys.argv[1])):
  try: z = np.load(d + "/eval_scores.npz")
  except FileNotFoundError: continue
  if rows is None:
    rows = load(d); task = np.array([r["task"].decode() if isinstance(r["task"], bytes) else r["task"] for r in rows]); pc = np.array([r["p_chosen"] for r in rows])
  assert np.allclose(z["p_chosen"], pc), d
  ok = (z["chosen"] > z["rejected"]).astype(float)
  gold_ok = np.where(pc >= 0.5, ok, 1 - ok)
  print(d.split("/")[-1], "acc %.3f" % ok.mean(), " ".join(f"{t[:6]}={ok[task==t].mean():.3f}/{gold_ok[task==t].mean():.2f}" for t in np.unique(task)), flush=True)
print("bayes", " ".join(f"{t[:6]}={np.maximum(pc,1-pc)[task==t].mean():.3f}" for t in np.unique(task)), {t:int((task==t).sum()) for t in np.unique(task)})
