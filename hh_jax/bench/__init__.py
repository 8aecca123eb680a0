"""Throughput benchmarks on the current machine: `hh-jax bench [--quick] [--json FILE]`.

Measured in one run, so that every ratio is taken side by side:

  ceiling   peak FLOP/s of a large `jnp.dot` (float32, and bfloat16 where supported);
  PM step   tokens/s of `hh_jax.train.pm.make_step` per laptop size and its model FLOP
            utilisation  MFU = 3 * forward_flops_per_token * tokens/s / peak_f32
            (forward + backward = 3x the forward matmul FLOPs, attention included);
            on CPU also the same step compiled with XLA's defaults instead of
            `optim.CPU_TRAIN_STEP_COMPILER_OPTIONS` (the A/B of that option);
  peer      the same PM step in PyTorch (`benchmarks/torch_pm.py`, eager, same threads);
  workloads per workload (`laptop` synthetic-world comparisons, `hh_rlhf` HH-RLHF-shaped
            ones at max_len 1024) and size: pairs/s of the packed and the padded PM step
            and of the torch peer run as TRL's reward trainer runs it (chosen + rejected
            in one batch padded to its longest row), and MFU on unique tokens
            (`workloads`; JSON `workloads.<w>.sizes.<size>.{packed,padded,torch}_pairs_per_s,
            mfu_unique`, each with the load average while it was measured);
  decode    reply tokens/s of `generate` (KV cache) vs `generate_uncached`, and vs
            Hugging Face `GPT2LMHeadModel.generate` on the same shape (greedy, use_cache);
  compiles  XLA compilations of an N-step and a 10N-step packed PM training loop (must be equal);
  memory    peak host RSS of a PM run and of a PPO-like rollout+update (largest size).

Every time is the best of several timed blocks (min is robust to other load on a shared
machine); compilation is excluded by warm-up calls. The loops and the memory runs execute
in fresh subprocesses so that compile caches and RSS high-water marks start from zero.
The torch/HF parts are skipped with a note when the `bench` extra is not installed.

    timing       timers, the compile counter, peak RSS, the matmul ceiling, machine info
    throughput   BenchConfig; PM-step and decoding throughput in this process
    children     the runs that need a fresh process (PM loop, PPO-like), `run_child`
    peers        the PyTorch / Hugging Face peers (benchmarks/torch_pm.py in a subprocess)
    workloads    the laptop / hh_rlhf comparison workloads; hh_rlhf_lengths their length table
    suite        `run` (all of the above), the table, `main` (the `hh-jax bench` command)
"""
