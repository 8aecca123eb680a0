"""Orbax checkpoints of a run: train state (params, optimizer, step), RNG key data and
the data iterator's position, so a killed run resumes bit-for-bit where it stopped.

The directory is an epath (a local folder or a bucket). In a multi-process run every process
calls save and restore together: each writes and reads its own shards, and orbax's primary
process writes the metadata."""

from __future__ import annotations

import jax
import numpy as np
import orbax.checkpoint as ocp

from hh_jax import paths

# Replica-parallel saving (each replica of a replicated array writes a slice of it) only for
# slices of at least 1 MiB: for smaller arrays the on-device slicing costs more than it saves.
REPLICA_PARALLEL_MIN_SLICE_BYTES = 1 << 20
ocp.type_handlers.register_type_handler(
    jax.Array, ocp.type_handlers.ArrayHandler(
        min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_SLICE_BYTES), override=True)


class Checkpointer:
  """Saves/restores {state pytree, JSON meta} under `<run_dir>/checkpoints/<step>`."""

  def __init__(self, run_dir, max_to_keep: int = 2):
    self.directory = paths.join(run_dir, "checkpoints")
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    """Write a checkpoint (blocks until it is on disk, so a kill right after loses nothing)."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()

  def restore(self, abstract_state, step: int | None = None):
    """Return (state, meta) of `step` (default: latest), laid out like `abstract_state`
    (a pytree of jax.ShapeDtypeStruct, with shardings where the state is sharded)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def delete(self, step: int) -> None:
    """Remove the checkpoint of `step` (one whose parameters turned out to give a NaN loss)."""
    self._manager.delete(step)

  def close(self) -> None:
    self._manager.close()


def key_to_json(key: jax.Array) -> list[int]:
  """A typed PRNG key as JSON-able ints (its raw key data)."""
  return np.asarray(jax.random.key_data(key)).tolist()


def key_from_json(data: list[int]) -> jax.Array:
  return jax.random.wrap_key_data(np.asarray(data, np.uint32))
