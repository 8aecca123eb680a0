"""Per run: held-out gold gains over step 0 at the best snapshot (analysis.rl_gold) and at the end,
for the quick-preset PPO runs under ROOT/h50 and ROOT/h90: python mix_gains.py ROOT."""
import sys, json, numpy as np
sys.path.insert(0, ".")  # run from the repository root
from analysis import rl_gold
from analysis.runs import discover

ROOT = sys.argv[1]
for mix in ("h50", "h90"):
  try:
    runs = [r for r in discover(f"{ROOT}/{mix}/ppo").runs if r.kind == "ppo"]
  except Exception as e:
    print(mix, e); continue
  hs, rs = [], []
  for run in runs:
    rec = rl_gold.run_record(run)
    g = rl_gold.seed_gains(rec)
    first, last = rec["snapshots"][0], rec["snapshots"][-1]
    kl = [m.get("ppo/kl") for m in run.metrics if m.get("ppo/kl") is not None]
    print(mix, run.name, "best", g["best_step"], "helpful %+.3f harmless %+.3f" % (g["helpful"], g["harmless"]),
          "| final helpful %+.3f harmless %+.3f" % (last["helpful"] - first["helpful"], last["harmless"] - first["harmless"]),
          "| n_help %d n_red %d | len %.1f->%.1f | KL end %.2f" % (first["n_helpful"], first["n_red_team"], first["reply_len"], last["reply_len"], kl[-1] if kl else float("nan")))
    hs.append(g["helpful"]); rs.append(g["harmless"])
  if hs:
    print(mix, "mean best-gain helpful %+.3f (sd %.3f) harmless %+.3f (sd %.3f) n=%d" % (np.mean(hs), np.std(hs, ddof=1) if len(hs) > 1 else 0, np.mean(rs), np.std(rs, ddof=1) if len(rs) > 1 else 0, len(hs)))
