"""The benchmark harness (jaxssl.bench) and the one-compilation property of the train step."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import app

from jaxssl import bench, config_base, optim, sharding, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("config", "framework", "examples_per_s", "flops_per_step", "utilisation",
        "pipeline_examples_per_s", "compile_s")


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
  """(rows written by --out, stdout) of `python -m jaxssl.bench` on the `quick` row, with 10
  warm-up steps on fresh batches from the pipeline, as training feeds them."""
  out = tmp_path_factory.mktemp("bench") / "rows.json"
  # One CPU device (not conftest's 8 fake ones): the row as `python -m jaxssl.bench` runs it.
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "jaxssl.bench", "--rows=quick", "--warmup=10", "--steps=3",
       f"--out={out}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(out.read_text()), proc.stdout


def test_bench_writes_the_row(quick_bench):
  rows, stdout = quick_bench
  assert [r["name"] for r in rows] == ["quick"]
  row = rows[0]
  assert set(KEYS) <= set(row) and row["framework"] == "jax"
  for key in KEYS[2:] + ("step_ms", "flops_per_s", "peak_flops_per_s", "peak_memory_bytes",
                         "pipeline_over_step"):
    assert row[key] > 0, key
  assert row["utilisation"] < 1
  assert row["examples_per_s"] == pytest.approx(row["batch_size"] * 1e3 / row["step_ms"])
  assert "| quick | jax | 32 |" in stdout


def test_ten_train_steps_compile_the_train_step_once(quick_bench):
  """10 steps on fresh pipeline batches and 3 more on a reused one: the step compiled once."""
  rows, _ = quick_bench
  assert rows[0]["compilations"] == 1


class _LinearMethod:
  """A one-matrix method: its train step compiles in a fraction of a second."""

  def init(self, rng):
    return {"params": {"w": jax.random.normal(rng, (12, 2))}}

  def loss(self, params, model_state, batch, rng, step):
    del rng, step
    x = batch["image"].astype(jnp.float32).reshape(batch["image"].shape[0], -1)[:, :12]
    return jnp.mean(jnp.square(x @ params["w"])), ({}, model_state)


def test_compilation_count_sees_a_recompile():
  """The counter behind `compilations` is not vacuous: the loop's own jitted step, fed a batch
  of another shape or dtype, is counted again."""
  config = config_base.base_config()
  config.optimizer.name = "sgd"
  mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
  method = _LinearMethod()
  tx, schedule = optim.make_optimizer(config.optimizer, 8, 10)
  init_fn, _, state_sh = train.create_state(method, tx, mesh, seed=0)
  step = train.make_train_step(method, tx, schedule, state_sh, mesh, seed=0)
  images = lambda n, dtype: {"image": np.ones((n, 2, 2, 3), dtype)}  # noqa: E731
  with jax.set_mesh(mesh), bench.count_compilations() as counts:
    state = init_fn(jax.random.key(0))
    for _ in range(3):
      state, _ = step(state, images(8, np.uint8))
    assert counts["jit(train_step)"] == 1
    state, _ = step(state, images(16, np.uint8))
    assert counts["jit(train_step)"] == 2
    state, _ = step(state, images(8, np.float32))
    assert counts["jit(train_step)"] == 3
  assert int(state["step"]) == 5


def test_optimisations_script_measures_each_with_and_without(tmp_path):
  out = tmp_path / "rows.json"
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, os.path.join("benchmarks", "optimisations.py"), "--row=quick",
       "--steps=2", "--warmup=1", f"--out={out}"], cwd=REPO, env=env, capture_output=True,
      text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = {(r["optimisation"], r["setting"]): r for r in json.loads(out.read_text())}
  assert set(rows) == {("donation", "on"), ("donation", "off"), ("prefetch", "on"),
                       ("prefetch", "off"), ("augmentation", "on device, batched"),
                       ("augmentation", "per image (host worker)")}
  assert all(rows["donation", s]["memory_bytes"] > 0 and rows["donation", s]["step_ms"] > 0
             for s in ("on", "off"))
  assert all(rows["prefetch", s]["examples_per_s"] > 0 for s in ("on", "off"))
  assert all(r["augment_ms"] > 0 for k, r in rows.items() if k[0] == "augmentation")
  assert "| quick | 32 | donation | on |" in proc.stdout


def test_skipped_row_and_table():
  assert bench._skip_reason(bench.Row("configs/nonexistent.py")) == (
      "skipped (configs/nonexistent.py missing)")
  assert bench._skip_reason(bench.ROWS["quick"]) is None
  table = bench.markdown_table([
      dict(name="a", framework="jax", skipped="skipped (configs/x.py missing)"),
      dict(name="b", framework="pytorch", batch_size=4, step_ms=10.0, examples_per_s=400.0,
           jax_over_pytorch=0.5)])
  lines = table.splitlines()
  assert lines[2].startswith("| a | jax | skipped (configs/x.py missing) |")
  assert "| b | pytorch | 4 | 10.0 | 400.0 | - |" in lines[3] and lines[3].endswith("| 0.50 |")
  assert len({line.count("|") for line in lines}) == 1


def test_set_overrides_parse_literals_and_refuse_a_missing_value():
  assert bench.parse_overrides(["model.scan_layers=True", "batch_size=8", "model.variant=tiny/16",
                                "data.mean=(0.5, 0.5)"]) == {
      "model.scan_layers": True, "batch_size": 8, "model.variant": "tiny/16",
      "data.mean": (0.5, 0.5)}
  with pytest.raises(app.UsageError, match="KEY=VALUE"):
    bench.parse_overrides(["model.scan_layers"])


def test_median_round_keeps_every_round_and_pairs_the_ratios():
  jax_rounds = [dict(name="m", framework="jax", examples_per_s=v, step_ms=1e3 / v)
                for v in (3.0, 2.0, 2.5)]
  torch_rounds = [dict(name="m", framework="pytorch", examples_per_s=v, jax_over_pytorch=j / v)
                  for v, j in zip((4.0, 2.5, 3.0), (3.0, 2.0, 2.5))]
  row = bench.median_round(jax_rounds)
  assert row["examples_per_s"] == 2.5 and row["step_ms"] == 400.0
  assert row["rounds_examples_per_s"] == [3.0, 2.0, 2.5]
  twin = bench.median_round(torch_rounds)
  assert twin["examples_per_s"] == 3.0
  np.testing.assert_allclose(twin["rounds_jax_over_pytorch"], [0.75, 0.8, 2.5 / 3.0])
  np.testing.assert_allclose(twin["jax_over_pytorch"], 0.8)  # median of the paired ratios
  assert bench.median_round(jax_rounds[:2])["examples_per_s"] == 2.0  # the lower middle one
  skipped = dict(name="m", framework="jax", skipped="failed (exit code 1)")
  assert bench.median_round([jax_rounds[0], skipped]) is skipped
  assert bench.median_round(jax_rounds[:1]) is jax_rounds[0]
