"""Faults injected into runs: busy, unwritable or foreign workdirs, NaN batches, empty data,
preemption of a method with EMA and queue state, resumed on another mesh (issues #7 and #6; the
kill -9 / SIGTERM resume and the corrupt-record tests live in test_train.py and
test_convert.py)."""
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import moco_v2, simclr
from jaxssl import checkpoint, config_base, methods, optim, reporting, sharding, train, workdir
from jaxssl.data import pipeline, sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(config, path, mesh_shape=None, num_devices=1):
  mesh = sharding.make_mesh(mesh_shape or dict(data=-1, fsdp=1, model=1),
                            jax.devices()[:num_devices])
  with jax.set_mesh(mesh):
    return train.train_and_evaluate(config, str(path), mesh)


def _quick(module=simclr, **overrides):
  c = module.get_config("quick")
  c.eval.baselines, c.log_every = False, 1
  c.update_from_flattened_dict(overrides)
  return c


def test_a_busy_workdir_is_refused_and_a_dead_owner_frees_it(tmp_path):
  lock = workdir.Lock(str(tmp_path))
  with pytest.raises(workdir.WorkdirInUse, match=rf"in use by another jaxssl process \(pid {os.getpid()}\)"):
    _run(_quick(), tmp_path)
  lock.release()
  # A process killed with -9 while holding the lock leaves no stale lock behind.
  holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from jaxssl import workdir; "
                             f"held = workdir.Lock({str(tmp_path)!r}); print('held', flush=True); "
                             "time.sleep(60)"], cwd=REPO, stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(workdir.WorkdirInUse):
    workdir.Lock(str(tmp_path))
  holder.kill()
  holder.wait()
  workdir.Lock(str(tmp_path)).release()


def test_an_unwritable_workdir_fails_before_anything_runs(tmp_path):
  (tmp_path / "file").write_text("not a directory")
  with pytest.raises(PermissionError, match="cannot write to workdir .*file/run"):
    _run(_quick(), tmp_path / "file" / "run")
  run = subprocess.run([sys.executable, "-m", "jaxssl.main", "--config=configs/simclr.py:quick",
                        f"--workdir={tmp_path / 'file' / 'run'}"], cwd=REPO, capture_output=True,
                       text=True)
  assert run.returncode == 2 and run.stderr.strip().startswith("error: cannot write to workdir")


def test_a_foreign_run_is_refused_unless_overwrite(tmp_path):
  # A workdir with a checkpoint of a SimCLR run on shapes; the new config trains on digits.
  old = _quick()
  (tmp_path / "config.json").write_text(old.to_json_best_effort())
  (tmp_path / "checkpoints" / "3").mkdir(parents=True)
  (tmp_path / "metrics.jsonl").write_text("{}\n")
  new = _quick(dataset="digits")
  with pytest.raises(ValueError, match="dataset: 'shapes' -> 'digits'.*--config.overwrite=True"):
    workdir.claim(new, str(tmp_path)).release()
  assert (tmp_path / "checkpoints" / "3").is_dir()  # Refused: nothing touched.
  new.overwrite = True
  workdir.claim(new, str(tmp_path)).release()
  assert sorted(os.listdir(tmp_path)) == [workdir.LOCK_FILE]
  assert not config_base.resume_differences(json.loads(old.to_json_best_effort()),
                                            _quick(overwrite=True))  # Not a config change.


def test_claims_from_processes_of_other_hosts_do_not_collide(tmp_path):
  # Another host's process with this pid, probing the shared workdir at this moment.
  theirs = tmp_path / f".write_test.{os.getpid()}"
  theirs.write_text("theirs")
  workdir.claim(_quick(), str(tmp_path)).release()
  assert theirs.read_text() == "theirs"
  assert sorted(os.listdir(tmp_path)) == sorted([theirs.name, workdir.LOCK_FILE])


def test_a_config_json_without_checkpoints_is_not_read(tmp_path):
  # A config.json with no checkpoint beside it (a run stopped before its first one, written in
  # place by an older jaxssl) holds no run to resume and is not read. Once there is a
  # checkpoint, an unreadable config.json is an error.
  (tmp_path / "config.json").write_text("")
  workdir.claim(_quick(), str(tmp_path)).release()
  (tmp_path / "checkpoints" / "3").mkdir(parents=True)
  with pytest.raises(ValueError, match="config.json is not valid JSON"):
    workdir.claim(_quick(), str(tmp_path))


class _NaNAt:
  """A source whose batch at `step` holds one NaN image (float images are accepted as is)."""

  def __init__(self, source, config, step):
    self._source = source
    self.poisoned = int(pipeline.global_batch_indices(
        step, global_batch=config.batch_size, num_records=len(source), seed=config.seed)[0])

  def __getattr__(self, name):
    return getattr(self._source, name)

  def __len__(self):
    return len(self._source)

  def get_batch(self, indices):
    batch = self._source.get_batch(indices)
    if self.poisoned in indices:
      images = batch["image"].astype(np.float32) / 255
      images[list(indices).index(self.poisoned)] = np.nan
      batch = dict(batch, image=images)
    return batch


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_a_nan_batch_stops_or_is_skipped(tmp_path, monkeypatch, policy):
  config = _quick(nan_policy=policy)
  get_source = sources.get_source

  def poisoned(name, split, data_config):
    source = get_source(name, split, data_config)
    return _NaNAt(source, config, step=2) if split == "train" else source

  monkeypatch.setattr(sources, "get_source", poisoned)
  if policy == "stop":
    with pytest.raises(FloatingPointError, match=r"non-finite loss or gradient at step 2 .*loss=nan"):
      _run(config, tmp_path)
    assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")
    return
  final = _run(config, tmp_path)
  losses = [r["loss"] for r in reporting.read_jsonl(tmp_path / "metrics.jsonl")]
  assert len(losses) == config.total_steps and np.isnan(losses[2])  # Step 2 is the third batch.
  assert np.isfinite(np.delete(losses, 2)).all() and np.isfinite(final["knn/top1"])
  _, state = checkpoint.load_params(str(tmp_path))
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))


class _ScaleMethod:
  """loss = mean((x w)^2) * batch["scale"]; a "counts" collection counts the steps it saw."""

  def init(self, rng):
    return {"params": {"w": jax.random.normal(rng, (12, 2))}, "counts": {"seen": 0.0}}

  def loss(self, params, model_state, batch, rng, step):
    del rng, step
    x = batch["image"].reshape(batch["image"].shape[0], -1)[:, :12]
    loss = (x @ params["w"]) ** 2 * batch["scale"][:, None]
    return loss.mean(), ({}, {"counts": {"seen": model_state["counts"]["seen"] + 1}})


def test_a_non_finite_step_leaves_the_state_bit_identical():
  """The step's guard: with a NaN or inf loss, params, AdamW's moments and model_state come out
  exactly as they went in, the step still counts and `nonfinite_step` records the first one;
  finite steps around it update everything."""
  config = config_base.base_config()
  mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
  method = _ScaleMethod()
  tx, schedule = optim.make_optimizer(config.optimizer, 8, 10)  # adamw, the base default
  init_fn, _, state_sh = train.create_state(method, tx, mesh, seed=0)
  step = train.make_train_step(method, tx, schedule, state_sh, mesh, seed=0)
  image = np.random.default_rng(0).normal(size=(8, 2, 2, 3)).astype(np.float32)
  batch = lambda scale: {"image": image, "scale": np.full(8, scale, np.float32)}  # noqa: E731
  copy = lambda tree: jax.tree.map(np.array, tree)  # noqa: E731  (the step donates its input)
  with jax.set_mesh(mesh):
    state = init_fn(jax.random.key(0))
    state, _ = step(state, batch(1.0))
    for bad, first_bad in ((np.nan, 1), (np.inf, 1)):
      before = copy(state)
      state, metrics = step(state, batch(bad))
      after = copy(state)
      assert not np.isfinite(metrics["loss"])
      for key in ("params", "opt_state", "model_state"):
        jax.tree.map(np.testing.assert_array_equal, after[key], before[key])
      assert after["step"] == before["step"] + 1 and after["nonfinite_step"] == first_bad
    state, _ = step(state, batch(1.0))
  assert not np.array_equal(state["params"]["w"], after["params"]["w"])
  assert state["model_state"]["counts"]["seen"] == 2 and int(state["nonfinite_step"]) == 1


def test_empty_data_is_refused_naming_the_fix():
  config = _quick(**{"data.num_test": 0})
  with pytest.raises(ValueError, match="'shapes' split 'test' has no records; check"):
    sources.get_source(config.dataset, "test", config.data)


@pytest.mark.slow
def test_preempted_moco_resumes_on_another_mesh_as_if_never_stopped(tmp_path, monkeypatch):
  """Preempted on 8 devices with FSDP, resumed on 2 with data parallelism: the checkpoint (params,
  optimizer, the queue and the momentum encoder) restores onto the new layout and the run
  continues with the uninterrupted run's losses."""
  config = _quick(moco_v2, total_steps=4, ckpt_every=4)
  fsdp = dict(data=1, fsdp=-1, model=1)
  reference = _run(config, tmp_path / "reference", fsdp, 8)
  log_train = reporting.Reporter.log_train

  def preempt_at_step_2(self, step, metrics, batch_size):
    log_train(self, step, metrics, batch_size)
    if step == 2:
      signal.raise_signal(signal.SIGTERM)  # The loop saves, then exits as when preempted.

  monkeypatch.setattr(reporting.Reporter, "log_train", preempt_at_step_2)
  with pytest.raises(train.Preempted, match="preempted .* at step 2"):
    _run(config, tmp_path / "run", fsdp, 8)
  monkeypatch.setattr(reporting.Reporter, "log_train", log_train)
  resumed = _run(config, tmp_path / "run", dict(data=-1, fsdp=1, model=1), 2)
  assert resumed.keys() == reference.keys()
  # Another mesh orders reductions differently: float32 rounding, not exact equality (the
  # evaluation's kNN votes and probe may then flip a test example, so only its keys are compared).
  losses = lambda d: [r["loss"] for r in reporting.read_jsonl(tmp_path / d / "metrics.jsonl")]  # noqa: E731
  assert len(losses("run")) == config.total_steps
  np.testing.assert_allclose(losses("run"), losses("reference"), rtol=1e-5)
  (_, a), (_, b) = (checkpoint.load_params(str(tmp_path / d)) for d in ("run", "reference"))
  assert set(a["model_state"]) >= {"queue", "target"}, set(a["model_state"])
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_bad_configs_fail_at_start_naming_the_key():
  for override, message in (("--config.bach_size=64", 'unknown config key .bach_size. Did you mean "batch_size"'),
                            ("--config.batch_size=many", "--config.batch_size=many: invalid literal for int")):
    run = subprocess.run([sys.executable, "-m", "jaxssl.main", "--config=configs/simclr.py:quick",
                          override], cwd=REPO, capture_output=True, text=True)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert re.search(message, lines[0]), lines[0]
  checks = ((dict(batch_size=12), 8, "batch_size=12 must be a positive multiple of the device count"),
            (dict(dataset="shape"), 1, 'unknown.*did you mean "shapes"'),
            ({"data.bad_records": "ignore"}, 1, "use skip or strict"),
            (dict(input_norm="per_image+mean"), 1, "is for the clip methods"),
            ({"data.scene_size": 4}, 1, "scene_size=4 is for the generated avshapes clips"))
  for overrides, num_devices, match in checks:
    with pytest.raises(ValueError, match=match):
      config_base.validate(_quick(**overrides), num_devices)


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(simclr_quick_run, tmp_path,
                                                                   caplog):
  shared, _ = simclr_quick_run
  shutil.copytree(shared / "checkpoints", tmp_path / "checkpoints")
  for root, _, names in os.walk(tmp_path / "checkpoints" / "24" / "state"):
    for name in names:  # Halve every array data file of the newest checkpoint (OCDBT's d/).
      path = os.path.join(root, name)
      if os.path.basename(root) == "d":
        with open(path, "r+b") as f:
          f.truncate(os.path.getsize(path) // 2)
  config = simclr.get_config("quick")
  method = methods.build(config, methods.DataInfo(config.data.image_size, 10))
  tx, _ = optim.make_optimizer(config.optimizer, config.batch_size, config.total_steps)
  mesh = sharding.make_mesh(dict(data=-1, fsdp=1, model=1), jax.devices()[:1])
  _, abstract, _ = train.create_state(method, tx, mesh, config.seed)
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  with caplog.at_level(logging.WARNING):
    step, state, data_state = ckpt.restore(abstract)
  ckpt.close()
  assert step == 20 and data_state == {"next_step": 20}
  assert "checkpoint at step 24 could not be restored" in caplog.text
  _, good = checkpoint.load_params(str(shared), step=20)
  for part in ("params", "model_state"):
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, jax.device_get(state[part]), good[part])))
