"""`hh-jax bench`: a tiny end-to-end run of its --quick path on the smallest size.

The torch/HF peers run only when the `bench` extra is installed (CI does not install it).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math

import jax
import jax.numpy as jnp
import pytest

from hh_jax import models
from hh_jax.bench import suite
from hh_jax.bench.throughput import QUICK
from hh_jax.bench.timing import CompileCounter

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_HF = HAS_TORCH and importlib.util.find_spec("transformers") is not None

TINY = dataclasses.replace(
    QUICK, sizes=("1k",), steps=1, repeats=1, matmul_n=128, decode_size="1k",
    decode_batch=2, prompt_len=4, new_tokens=3, decode_repeats=1, loop_size="1k", loop_steps=2,
    loop_ratio=10, memory_size="1k", memory_steps=1, torch=HAS_TORCH, xla_default_ab=False,
    laptop_pairs=4, hh_pairs=2, workload_batches=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  path = tmp_path_factory.mktemp("bench") / "bench.json"
  results = suite.run(TINY, log=lambda *_: None)
  results.update(suite.flat_summary(results))
  path.write_text(json.dumps(results))
  return json.loads(path.read_text()), suite.format_table(results)


def _positive(x) -> bool:
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow   # all four share one ~40-50 s end-to-end run (module fixture)
def test_json_has_the_headline_numbers(tiny_run):
  results, _ = tiny_run
  assert _positive(results["matmul_peak_flops"])
  for key in ("decode_cached_tokens_per_s", "decode_uncached_tokens_per_s"):
    assert _positive(results[key]), key
  size = results["sizes"]["1k"]
  for key in ("pm_step_tokens_per_s", "pm_step_mfu"):
    assert _positive(size[key]), key
    assert results[f"{key}/1k"] == size[key]
  if HAS_TORCH:
    assert _positive(size["torch_pm_step_tokens_per_s"])
  if HAS_HF:
    assert _positive(results["hf_generate_tokens_per_s"])
  if not HAS_TORCH:
    assert any("torch" in note for note in results["notes"])
  assert _positive(results["peak_rss_mb"]["pm_run"])
  assert _positive(results["peak_rss_mb"]["ppo_like"])


@pytest.mark.slow   # all five share one end-to-end run (module fixture; ~60 s quiet)
def test_workloads_report_packed_padded_and_torch_pairs_per_s(tiny_run):
  results, table = tiny_run
  for name in ("laptop", "hh_rlhf"):
    w = results["workloads"][name]
    r = w["sizes"]["1k"]
    for key in ("packed_pairs_per_s", "padded_pairs_per_s", "mfu_unique"):
      assert _positive(r[key]), (name, key)
      assert results[f"workloads/{name}/{key}/1k"] == r[key]
    if HAS_TORCH:
      assert _positive(r["torch_pairs_per_s"])
    assert len(r["load_average_1min"]) == 2
    assert 0 < w["unique_fraction"] < w["real_fraction"] <= 1
    # MFU on unique tokens = 3 x 2 N x (unique tokens per step) x steps/s / peak
    n = models.count_params(models.ladder_config("1k", vocab_size=259, max_len=w["seq_len"]))
    steps_per_s = r["packed_pairs_per_s"] / w["pairs_per_step"]
    assert r["mfu_unique"] == pytest.approx(
        6 * n * r["unique_tokens_per_step"] * steps_per_s / results["matmul_peak_flops"], rel=1e-9)
    assert f"workload {name}" in table
  assert results["workloads"]["hh_rlhf"]["seq_len"] == 1024


@pytest.mark.slow   # all four share one ~40-50 s end-to-end run (module fixture)
def test_mfu_is_three_forward_passes_over_the_ceiling(tiny_run):
  results, _ = tiny_run
  r = results["sizes"]["1k"]
  # 1k = (1 layer, d 8): N = 906 non-embedding params (config docstring), T = 64;
  # forward FLOPs/token = 2N + 4 L T d = 1812 + 2048 = 3860; train step = 3x that.
  assert models.count_params(models.ladder_config("1k", vocab_size=259, max_len=64)) == 906
  expected = 3 * 3860 * r["pm_step_tokens_per_s"] / results["matmul_peak_flops"]
  assert r["pm_step_mfu"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow   # all four share one ~40-50 s end-to-end run (module fixture)
def test_compile_count_does_not_grow_with_steps(tiny_run):
  results, _ = tiny_run
  c = results["compiles"]
  assert (c["short_steps"], c["long_steps"]) == (2, 20)
  assert c["short"] > 0
  assert c["short"] == c["long"]


@pytest.mark.slow   # all four share one ~40-50 s end-to-end run (module fixture)
def test_table_names_every_part(tiny_run):
  _, table = tiny_run
  for text in ("matmul ceiling", "| 1k |", "cached", "uncached", "compilations per run", "peak RSS"):
    assert text in table


def test_compile_counter_counts_one_per_new_shape():
  """A jitted function compiles once per input shape and never again for a seen shape."""
  f = jax.jit(lambda x: x * 2.0 + 1.0)
  inputs = {n: jnp.ones((n,)) for n in (3, 5)}          # made outside: eager ops compile too
  with CompileCounter() as counter:
    for n in (3, 5, 3, 5, 3):
      f(inputs[n]).block_until_ready()
  assert counter.count == 2


def test_unknown_size_is_an_error(capsys):
  with pytest.raises(SystemExit):
    suite.main(["--sizes", "7k"])
  assert "unknown" in capsys.readouterr().err


def test_a_childs_peak_rss_is_its_own_not_its_large_parents():
  """Linux carries ru_maxrss across fork + exec; the bench's children must report their own
  high-water mark, so a parent holding 600 MB must not show up in a child's figure."""
  import subprocess
  import sys
  import numpy as np
  parent = np.ones(600 * 2**20 // 8)
  parent += 1.0                                                     # touch every page
  out = subprocess.run([sys.executable, "-c", "from hh_jax.bench.timing import peak_rss_mb; "
                        "print(peak_rss_mb())"], capture_output=True, text=True, check=True)
  assert float(out.stdout.split()[-1]) < 500
  del parent
