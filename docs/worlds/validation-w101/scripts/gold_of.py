"""Usage: gold_of.py PPO_RUN_DIR...: held-out gold per snapshot and the best-snapshot gains (analysis.rl_gold)."""
import sys, json
from analysis import rl_gold
from analysis.runs import Run, read_json
for d in sys.argv[1:]:
  run = Run(dir=d, name=d.rstrip("/").split("/")[-1] + "-s0", config=read_json(d + "/config.json"), summary={})
  rec = rl_gold.run_record(run)
  g = rl_gold.seed_gains(rec)
  print(d.split("/")[-1], "best", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in (g or {}).items()})
  for s in rec["snapshots"]:
    print("  step %3d help %.3f harm %.3f hh %.3f len %.1f trainhh %s n_red %d" % (s["step"], s["helpful"], s["harmless"], s["hh"], s["reply_len"], s["train_gold_hh"] and round(s["train_gold_hh"], 3), s["n_red_team"]))
