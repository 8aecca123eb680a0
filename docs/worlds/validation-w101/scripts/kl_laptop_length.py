"""Held-out gold gains of two PPO runs at the laptop preset's length (100 iterations of 256), KL
coefficient 0.03 and 0.1, policy 100k against the 25k train PM, on world 101's validation split.

Runs (session 9; roots R1 and R2 share the base LMs and PM halves):
    hh-jax sweep experiments/base_lm.py --root R1 --preset laptop --world-seed 101 \
        --set data.eval_split=validation --axis 'sizes=("6k","25k","100k")'
    hh-jax sweep experiments/pm_halves.py --root R1 --preset laptop --world-seed 101 \
        --set data.eval_split=validation --axis 'half_sizes=("6k","25k")'
    hh-jax train experiments/ppo.py --root R1|R2 --preset laptop --world-seed 101 \
        --axis 'half_sizes=("6k","25k")' --set eval_split=validation --set kl_coef=0.03|0.1 \
        --run policy-100k-pm-25k-s0
"""
import glob, json, os, sys
import numpy as np
RUNS = (("kl 0.03", sys.argv[1]), ("kl 0.1", sys.argv[2]))
for name, d in RUNS:
  m = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
  kl = {r["step"]: r["ppo/kl"] for r in m}
  snaps = sorted(glob.glob(f"{d}/evals/step_*.npz"))
  z0 = np.load(snaps[0]); helpful = z0["task"] != "harmful_request"
  def gains(z):
    return (z["gold_helpful"][helpful].mean() - z0["gold_helpful"][helpful].mean(),
            z["gold_harmless"][~helpful].mean() - z0["gold_harmless"][~helpful].mean(),
            z["mask"].sum(1).mean())
  print(f"{name}: KL (nats) at iteration 10/25/50/100: " + " / ".join(f"{kl[i]:.2f}" for i in (10, 25, 50, 100)))
  for s in snaps[1:]:
    z = np.load(s); st = int(os.path.basename(s)[5:11]); h, hl, L = gains(z)
    print(f"  step {st:3d}: held-out helpful gain {h:+.3f}  harmless gain {hl:+.3f}  reply len {L:.1f}  (train gold hh {np.mean([r['gold/hh'] for r in m if st-10 < r['step'] <= st]):+.3f})")
  print(f"  helpful prompts {helpful.sum()}, red-team {(~helpful).sum()}")
