"""Many tiny PM runs in one program: the runs of a group train together under `jax.vmap`.

A sweep's smallest rungs are overhead-bound: a 1k-parameter PM step is a few microseconds
of arithmetic and about 3 ms of per-op overhead on the 2-core CPU, and every seed of a run
compiles its own step (its packed layout differs). Runs that differ only in `seed` (same size, data
config, step count and batch shapes) are trained as one *group*: their train states
(params, optimizer state, step, hparams) are stacked along a leading member axis M and one
jitted `vmap` of `hh_jax.train.pm.step_fn` steps them all,

    state  {params, opt_state, step, hparams}, every leaf (M, ...)
    batch  every key (M, ...) of the member's own step input (`pm.device_batch`, packed)
    key    (M,) typed keys, the member's own step key (folded with its step inside)

Each member keeps everything of its own run: init key and step key from its seed, its own
training pairs (`pipeline.load_pm_data(cfg.data, seed)`) in its own order (`PairIterator`
of its seed), its own run directory written by the lifecycle's own pieces (`lifecycle._Log`
for metrics.jsonl, `Checkpointer` for checkpoints, `lifecycle._finish` for the model, the
evaluation files and summary.json), so a member's directory has the files and keys of the
sequential run and `lifecycle.is_finished` / `load_model` / analysis cannot tell them apart.
`time/seconds` of a member is the group's wall time up to that member's summary.

Packing (data.packing, the default). The members' packed layouts differ (their pairs
differ); all of them use one layout (`group_layout`): at each candidate row length the
most rows and score slots any member's batch needs, and of those the row length of least
step FLOPs (as `pm.packed_layout` chooses for one run). What a member then equals:

    bit for bit   not claimed (batched matmuls under vmap may sum in another order)
    float tol.    the sequential run of its seed with the group's layout
                  (`pm.build_task(layout=...)`), and, since packed scores and gradients do not
                  depend on the layout that holds a batch (`hh_jax.data.packing`), the
                  sequential run of its seed as `hh-jax train` runs it (tests/test_multirun.py:
                  20 steps, params within 2e-4 relative, measured max |diff| ~1e-6; over
                  thousands of steps such differences can grow as between two machines)

Resuming. A group checkpoints every member in its own directory exactly as the lifecycle
does (state, iterator position, key, pending log window), every `checkpoint_every` steps.
`run_group` skips finished members, then splits the rest by their latest checkpoint step:
members at the same step continue as a group, a member alone continues sequentially
(`tasks.run_config`, from its checkpoint). A killed group therefore resumes as a group; a
sequential run's checkpoint is resumed sequentially (or with its peers at the same step).

Divergence. A member whose loss turns non-finite stops logging at once (its last good
checkpoint kept, as the lifecycle does); the others finish; then NonFiniteLossError names it.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from hh_jax import models, tracking
from hh_jax import sharding as shd
from hh_jax.checkpoint import Checkpointer, key_to_json
from hh_jax.data import packing, pipeline
from hh_jax.data.batching import PairIterator
from hh_jax.metrics import LateFetcher, NonFiniteLossError
from hh_jax.special_tokens import PAD_ID
from hh_jax.train import lifecycle, pm, supervised, tasks
from hh_jax.train.optim import jit_train_step, make_optimizer

# Groups only PM runs of at most this many non-embedding parameters: on the 2-core CPU of
# docs/performance.md ("Many runs in one program") a group of 3 seeds of 500 steps ran 1.40x
# and 1.48x the sequential runs/minute at 1k and 6k, but 0.86x and 0.90x at 25k and 100k (a
# vmapped step there is slower than three single steps), so only the 1k and 6k rungs are
# grouped by default. On an accelerator (not measured) raise it: $HH_JAX_MULTIRUN_MAX_PARAMS;
# 0 turns grouping off.
MAX_NON_EMBEDDING = 10_000
MAX_MEMBERS = 8                     # runs per group (a larger set of seeds: several groups)
PAD_TOKEN_KEYS = ("chosen_tokens", "rejected_tokens")


# ----------------------------------------------------------------------------- grouping


def max_non_embedding() -> int:
  """The largest PM (non-embedding parameters) that is grouped: $HH_JAX_MULTIRUN_MAX_PARAMS
  if set, else MAX_NON_EMBEDDING."""
  return int(os.environ.get("HH_JAX_MULTIRUN_MAX_PARAMS", MAX_NON_EMBEDDING))


def seedless_key(cfg) -> str:
  """The config as canonical JSON with `seed` removed: runs with equal keys differ in seed only."""
  return json.dumps({**dataclasses.asdict(cfg), "seed": None}, sort_keys=True, default=str)


def groupable(cfg, limit: int | None = None) -> bool:
  """Whether a run's config may train in a group (from the config alone: planning starts no
  JAX backend): a PM of a ladder rung with at most `limit` (default `max_non_embedding()`)
  non-embedding parameters, without periodic evaluations. (`run_group` trains a group
  sequentially where the run's mesh has more than one device or there are several processes.)"""
  limit = max_non_embedding() if limit is None else limit
  if getattr(cfg, "kind", None) != "pm" or cfg.init_from_hf or cfg.eval_every or limit <= 0:
    return False
  size = models.count_params(models.ladder_config(cfg.model_size, vocab_size=2,
                                                  max_len=cfg.data.max_len))
  return size <= limit


def single_device(cfg) -> bool:
  """Whether the run trains on one device in one process (a group's condition at run time)."""
  return jax.process_count() == 1 and shd.make_mesh(cfg.mesh).size == 1


def plan_groups(runs: list, limit: int | None = None, max_members: int = MAX_MEMBERS) -> list[list]:
  """Runs (anything with `.config`) in groups, in order: groupable runs with equal
  `seedless_key` together (at most max_members a group, placed where the first one was),
  every other run alone."""
  groups: list[list] = []
  open_group: dict[str, list] = {}
  for run in runs:
    if not groupable(run.config, limit):
      groups.append([run])
      continue
    key = seedless_key(run.config)
    if key not in open_group or len(open_group[key]) >= max_members:
      open_group[key] = []
      groups.append(open_group[key])
    open_group[key].append(run)
  return groups


# ----------------------------------------------------------------------------- shapes


def group_layout(model_cfg, arrays_list, rows_list) -> packing.PackedLayout:
  """One packed layout every member's batches fit: at each candidate row length L
  (`packing.row_len_candidates` of the longest seq_len), R and K = the most rows and score
  slots over all members' batches (`packing.plan_pair_layout`); the L of least
  R * L * forward FLOPs per token, as `pm.packed_layout` chooses for one run."""
  def plan(row_len):
    lays = [packing.plan_pair_layout(a, rows, row_len) for a, rows in zip(arrays_list, rows_list)]
    return packing.PackedLayout(rows=max(l.rows for l in lays), row_len=row_len,
                                slots=max(l.slots for l in lays))

  seq_len = max(a.seq_len for a in arrays_list)
  return packing.choose_layout(plan, packing.row_len_candidates(seq_len),
                               lambda row_len: models.forward_flops_per_token(model_cfg, row_len))


def stack_trees(trees: list):
  """[tree] * M -> one tree whose every leaf is (M, ...) (typed PRNG keys included)."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def member_tree(tree, i: int):
  """Member i of a stacked tree: every leaf x -> x[i]."""
  return jax.tree.map(lambda x: x[i], tree)


def stack_batches(batches: list[dict]) -> dict:
  """Step inputs of M members -> one dict of (M, ...) numpy arrays; the padded path's
  token matrices (B, T_i) are right-padded with PAD to the longest T first (PAD after the
  EOC changes no score: attention is causal)."""
  out = {}
  for k in batches[0]:
    xs = [np.asarray(b[k]) for b in batches]
    if k in PAD_TOKEN_KEYS:
      t = max(x.shape[1] for x in xs)
      xs = [np.pad(x, ((0, 0), (0, t - x.shape[1])), constant_values=PAD_ID) for x in xs]
    out[k] = np.stack(xs)
  return out


def make_group_step(graphdef, optimizer):
  """The jitted `step(states (M, ...), batches (M, ...), keys (M,)) -> (states, metrics
  (M,) each)`: `pm.step_fn` vmapped over the member axis, the states donated."""
  return jit_train_step(jax.vmap(pm.step_fn(graphdef, optimizer)), donate=True)


# ----------------------------------------------------------------------------- members


@dataclasses.dataclass
class Member:
  """One run of a group: its config, directory, task, log, checkpointer and step key."""

  cfg: Any
  run_dir: str
  task: lifecycle.Task
  to_input: Any                       # host PairBatch -> the step's input dict (numpy)
  changes: list[str]
  vocab_size: int
  log: Any = None
  ckpt: Checkpointer | None = None
  key: Any = None
  saved: int | None = None
  error: str | None = None


def latest_step(run_dir: str) -> int:
  """The step of a run directory's latest checkpoint (0 if none)."""
  if not os.path.isdir(os.path.join(run_dir, "checkpoints")):
    return 0
  ckpt = Checkpointer(run_dir)
  try:
    return ckpt.latest_step() or 0
  finally:
    ckpt.close()


def load_members(cfgs, run_dirs, inputs) -> list[Member]:
  """Each member's data, its task (`pm.build_task`, the group's packed layout) and its
  host-side step input; config.json written as `lifecycle.run` writes it."""
  changes = [lifecycle.check_config(d, dataclasses.asdict(c)) for c, d in zip(cfgs, run_dirs)]
  datas = [inp if inp is not None else pipeline.load_pm_data(c.data, c.seed)
           for c, inp in zip(cfgs, inputs)]
  layout = None
  if cfgs[0].data.packing:
    rows = [PairIterator(d.train, c.batch_size, seed=c.seed, num_epochs=c.num_epochs)
            .run_batch_rows() for c, d in zip(cfgs, datas)]
    model_cfg = supervised.model_config_of(cfgs[0], datas[0].tokenizer.vocab_size)
    layout = group_layout(model_cfg, [d.train for d in datas], rows)
  members = []
  for cfg, run_dir, data, change in zip(cfgs, run_dirs, datas, changes):
    task = pm.build_task(cfg, run_dir, inputs=data, layout=layout)
    names = data.train.source_names
    to_input = (lambda b, n=names: pm.device_batch(b, n)) if layout is None else (
        lambda b, n=names: packing.pack_pairs(pm.device_batch(b, n), layout))
    lifecycle.write_json(run_dir, lifecycle.CONFIG, dataclasses.asdict(cfg))
    for name, obj in task.json_files.items():
      lifecycle.write_json(run_dir, name, obj)
    members.append(Member(cfg, run_dir, task, to_input, change, data.tokenizer.vocab_size))
  return members


def restore_members(members: list[Member], track: str) -> tuple[Any, Any, int]:
  """(stacked states, stacked keys, start step): every member restored from its latest
  checkpoint (or its initial state) by `lifecycle._restore`, its log and tracker opened."""
  states, starts = [], []
  for m in members:
    m.ckpt = Checkpointer(m.run_dir)
    m.log = lifecycle._Log(m.run_dir, m.task, m.task.num_steps)
    state, m.key, start = lifecycle._restore(m.ckpt, m.task, m.log, m.run_dir, m.changes)
    m.log.tracker = tracking.open_tracker(track, m.run_dir, dataclasses.asdict(m.cfg), start)
    states.append(state)
    starts.append(start)
  if len(set(starts)) != 1:
    raise lifecycle.RunError(f"a group's members restore at different steps {starts}")
  return stack_trees(states), stack_trees([m.key for m in members]), starts[0]


# ----------------------------------------------------------------------------- the loop


def live(members: list[Member]) -> list[tuple[int, Member]]:
  """(index, member) of the members that have not diverged."""
  return [(i, m) for i, m in enumerate(members) if m.error is None]


def consume(members: list[Member], fetched) -> None:
  """Hand each live member its slice of one step's fetched (M,) metrics (`lifecycle._Log`);
  a member whose loss is non-finite is stopped as `lifecycle.run` stops a run: the checkpoint
  whose parameters gave that loss is deleted, its files closed, the error kept."""
  if fetched is None:
    return
  step, metrics = fetched
  for i, m in live(members):
    try:
      m.log.consume((step, {k: v[i] for k, v in metrics.items()}))
    except NonFiniteLossError as e:
      if m.saved is not None and step == m.saved + 1:
        m.ckpt.delete(m.saved)
      m.ckpt.close()
      m.log.close()
      m.error = (f"{m.run_dir}: {e}: training diverged; the latest checkpoint holds "
                 f"finite-loss parameters")


def save(members: list[Member], fetcher: LateFetcher, state, step: int) -> None:
  """Checkpoint every live member in its own directory at `step`, as `lifecycle.run` does:
  the pending metrics checked first, the logs flushed, then state, iterator, key, window."""
  consume(members, fetcher.flush())
  for i, m in live(members):
    m.log.flush(step)
    m.ckpt.save(step, member_tree(state, i),
                {"data": m.task.batches.state(), "key": key_to_json(m.key), "step": step,
                 "window": m.log.window})
    m.saved = step


def train_members(members: list[Member], step_fn, state, keys, start: int, progress: bool,
                  stop_after_steps: int | None):
  """`lifecycle.run`'s loop for the stacked state: step from `start` to num_steps (or
  checkpoint and stop at stop_after_steps, as a kill would), logging and checkpointing every
  member as its own run; -> (state, the step reached, whether it stopped early)."""
  task0 = members[0].task
  num_steps, every = task0.num_steps, task0.checkpoint_every
  bar = tqdm(total=num_steps, initial=start, disable=not progress, unit="step", leave=False,
             desc=f"{len(members)} runs of {os.path.basename(members[0].run_dir)}")
  fetcher, step = LateFetcher(), start
  while step < num_steps:
    host = [next(m.task.batches) for m in members]
    batch = stack_batches([m.to_input(h) for m, h in zip(members, host)])     # (M, ...)
    state, metrics = step_fn(state, batch, keys)
    step += 1
    for m, h in zip(members, host):
      m.log.tokens[step] = m.task.count_tokens(h)
    consume(members, fetcher.push(step, metrics))
    bar.update(1)
    if stop_after_steps is not None and step >= stop_after_steps:
      save(members, fetcher, state, step)
      break
    if every and step % every == 0 and step < num_steps:
      save(members, fetcher, state, step)
  consume(members, fetcher.flush())
  bar.close()
  if step == num_steps and any(m.saved != step for _, m in live(members)):
    save(members, fetcher, state, step)
  for _, m in live(members):
    m.ckpt.close()
    m.log.close()
  return state, step, step < num_steps


def train_group(cfgs, run_dirs, inputs, progress: bool = False,
                stop_after_steps: int | None = None, track: str = "none") -> list[dict]:
  """Train unfinished runs that differ only in seed, all at the same checkpoint step, as one
  vmapped program; write each run's directory; -> each run's summary ({"stopped_at": s}
  for a stop)."""
  t_start = time.time()
  members = load_members(cfgs, run_dirs, inputs)
  steps = {m.task.num_steps for m in members}
  if len(steps) != 1:
    raise lifecycle.RunError(f"a group's runs take different numbers of steps {sorted(steps)}")
  cfg, num_steps = cfgs[0], steps.pop()
  model_cfg = supervised.model_config_of(cfg, members[0].vocab_size)
  step_fn = make_group_step(models.abstract_init(model_cfg)[0], make_optimizer(cfg.optim, num_steps))
  state, keys, start = restore_members(members, track)
  state, step, stopped = train_members(members, step_fn, state, keys, start, progress,
                                       stop_after_steps)
  if stopped:
    return [{"stopped_at": step} for _ in members]
  out = [lifecycle._finish(m.run_dir, m.task, member_tree(state, i), step, t_start, m.cfg)
         for i, m in live(members)]
  errors = [m.error for m in members if m.error is not None]
  if errors:
    raise NonFiniteLossError("; ".join(errors))
  return out


def run_group(cfgs, run_dirs, inputs=None, *, progress: bool = False,
              stop_after_steps: int | None = None, track: str = "none") -> list[dict]:
  """Run (or resume, or skip) runs that differ only in seed; -> their summaries, in order.

  Finished runs are skipped; the others are split by their latest checkpoint step: a set of
  two or more trains as one group (`train_group`), a run alone through `tasks.run_config`
  (so is every run where the mesh has several devices or there are several processes).
  inputs: optional in-memory PMData per run (tests), else each run loads its own.
  """
  if len({seedless_key(c) for c in cfgs}) != 1:
    raise lifecycle.RunError("a group's runs must differ in seed only")
  inputs = list(inputs) if inputs is not None else [None] * len(cfgs)
  out: list[dict | None] = [None] * len(cfgs)
  by_start = collections.defaultdict(list)
  for i, run_dir in enumerate(run_dirs):
    if lifecycle.is_finished(run_dir):
      out[i] = lifecycle.read_json(run_dir, lifecycle.SUMMARY)
    else:
      by_start[latest_step(run_dir) if len(cfgs) > 1 else 0].append(i)
  sets = list(by_start.values())
  if any(len(idx) > 1 for idx in sets) and not single_device(cfgs[0]):
    sets = [[i] for idx in sets for i in idx]
  for idx in sets:
    if len(idx) == 1:
      i = idx[0]
      out[i] = tasks.run_config(cfgs[i], run_dirs[i], inputs=inputs[i], progress=progress,
                                stop_after_steps=stop_after_steps, track=track)
      continue
    summaries = train_group([cfgs[i] for i in idx], [run_dirs[i] for i in idx],
                            [inputs[i] for i in idx], progress, stop_after_steps, track)
    for i, summary in zip(idx, summaries):
      out[i] = summary
  return out


def timed_group(cfgs, run_dirs, track: str = "none", progress: bool = False) -> float:
  """`run_group` (here or in a worker process); its wall time in seconds."""
  t = time.time()
  run_group(cfgs, run_dirs, progress=progress, track=track)
  return time.time() - t
