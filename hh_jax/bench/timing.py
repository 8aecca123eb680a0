"""Timers and counters of the bench: best-of-blocks wall time, XLA compilations, peak RSS,
the matmul FLOP/s ceiling, and what machine the numbers come from."""

from __future__ import annotations

import math
import os
import platform
import resource
import sys
import time

import jax
import jax.numpy as jnp

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def best_seconds_per_call(fn, calls: int, repeats: int, warmup: int = 1) -> float:
  """min over `repeats` blocks of (wall time of `calls` calls of fn) / calls.

  fn must block on its own result (or return something `jax.block_until_ready` can wait on).
  """
  for _ in range(warmup):
    jax.block_until_ready(fn())
  best = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = fn()
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - start) / calls)
  return best


class CompileCounter:
  """Counts XLA backend compilations (jax.monitoring events) while active.

      with CompileCounter() as counter: ...;  counter.count, counter.names
  """

  def __init__(self):
    self.names: list[str] = []

  def _listener(self, event: str, duration_secs: float, **kwargs) -> None:
    del duration_secs
    if event == BACKEND_COMPILE_EVENT:
      self.names.append(str(kwargs.get("fun_name", "?")))

  @property
  def count(self) -> int:
    return len(self.names)

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listener)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listener)


def peak_rss_mb() -> float:
  """This process's resident-set high-water mark: VmHWM of /proc/self/status on Linux (its
  memory map's own), else ru_maxrss (KiB on Linux, bytes on macOS). Linux carries ru_maxrss
  across exec, so a child forked from a large parent would report the parent's size."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024                    # kB
  except OSError:
    pass
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def matmul_peak_flops(dtype=jnp.float32, n: int = 2048, calls: int = 4, repeats: int = 3) -> float:
  """FLOP/s of an (n, n) @ (n, n) `jnp.dot`: 2 n^3 FLOPs per call."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  dot = jax.jit(jnp.dot)
  return 2 * n**3 / best_seconds_per_call(lambda: dot(a, b), calls, repeats)


def bf16_supported() -> bool:
  """bfloat16 matmuls are native on accelerators; on CPU XLA emulates them, so time them too."""
  try:
    jax.block_until_ready(jnp.ones((2, 2), jnp.bfloat16) @ jnp.ones((2, 2), jnp.bfloat16))
    return True
  except Exception:  # noqa: BLE001 (any backend failure means "not supported")
    return False


def load_average_1min() -> float | None:
  """The 1-minute load average (None where the OS has none): how busy a shared machine was."""
  return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine_info() -> dict:
  """CPU model and count, JAX backend, device kind and version, and the load when measured."""
  cpu = platform.processor() or "?"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {"nproc": os.cpu_count(), "cpu": cpu, "jax_backend": jax.default_backend(),
          "device": jax.devices()[0].device_kind, "jax_version": jax.__version__,
          # Other processes on a shared machine skew every number: record how busy it was.
          "load_average_1min": load_average_1min()}
