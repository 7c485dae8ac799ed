"""End to end: SimCLR trains on 8 fake devices, checkpoints, evaluates, resumes exactly."""
import json
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from configs import simclr as simclr_config
from jaxssl import checkpoint, config_base, reporting, sharding, train
from quick_runs import simclr_quick_command

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quick(**overrides):
  c = simclr_config.get_config("quick")
  c.eval.baselines = False
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    target = c
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return c


def _losses(workdir):
  return [(r["step"], r["loss"]) for r in reporting.read_jsonl(os.path.join(workdir, "metrics.jsonl"))]


@pytest.mark.slow
def test_train_checkpoint_evaluate_and_rerun_is_a_no_op(tmp_path, capsys):
  config = _quick()
  config.eval.baselines = True
  mesh = sharding.make_mesh(dict(data=2, fsdp=4, model=1))
  with jax.set_mesh(mesh):
    final = train.train_and_evaluate(config, str(tmp_path), mesh)
  for key in ("knn/top1", "linear/top1", "knn/top1/random_init", "knn/top1/raw_pixels",
              "linear/top1/random_init", "linear/top1/raw_pixels"):
    assert 0.0 <= final[key] <= 1.0, key
  assert json.load(open(tmp_path / "eval" / "final.json")) == final
  assert [s for s, _ in _losses(tmp_path)] == [2, 4, 6]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "6"]
  assert (tmp_path / "plots" / "training.png").exists() and (tmp_path / "config.json").exists()
  assert any(f.startswith("events") for f in os.listdir(tmp_path / "tb"))

  capsys.readouterr()
  with jax.set_mesh(mesh):
    again = train.train_and_evaluate(config, str(tmp_path), mesh)
  assert again == final
  assert "no training needed" in capsys.readouterr().out
  assert [s for s, _ in _losses(tmp_path)] == [2, 4, 6]

  # Another dataset in the same workdir would mix two runs: refused, naming the key; extending
  # total_steps, changing the evaluation or the CPU kernels (float rounding) is a resume, not
  # another run.
  other = _quick()
  other.dataset = "digits"
  with pytest.raises(ValueError, match="dataset: 'shapes' -> 'digits'"):
    train.train_and_evaluate(other, str(tmp_path), mesh)
  extended = _quick()
  extended.total_steps, extended.eval.knn_k, extended.cpu_ynnpack = 8, 5, False
  assert not config_base.resume_differences(json.load(open(tmp_path / "config.json")), extended)


def test_runs_write_the_persistent_compilation_cache(simclr_quick_run):
  # main.py points JAX's cache at $JAXSSL_CACHE_DIR (conftest.py: one directory per session).
  assert os.listdir(os.environ["JAXSSL_CACHE_DIR"])


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_exactly(tmp_path, sig, simclr_quick_run):
  ref, env = simclr_quick_run
  run = tmp_path / "killed"
  proc = subprocess.Popen(simclr_quick_command(run), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  deadline = time.time() + 300
  while time.time() < deadline:  # kill once a checkpoint exists and training has gone past it
    steps = [s for s, _ in _losses(run)] if (run / "metrics.jsonl").exists() else []
    if steps and max(steps) >= 10:
      break
    time.sleep(0.05)
  proc.send_signal(sig)
  sent = time.time()
  out = proc.communicate()[0].decode()
  assert proc.returncode != 0
  assert time.time() - sent < 60  # SIGTERM: the checkpoint is written, then it exits promptly.
  if sig == signal.SIGTERM:
    assert "preempted" in out and "Rerun the same command" in out
  assert 0 < len(_losses(run)) < 24

  rerun = subprocess.run(simclr_quick_command(run), cwd=REPO, env=env, capture_output=True, text=True)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert "resumed from" in rerun.stdout
  # Same data order and RNG after the resume: the loss curve and the final train state (params,
  # optimizer moments, BatchNorm statistics, step) equal the uninterrupted run's, bitwise.
  assert _losses(run) == _losses(ref)
  (_, a), (_, b) = checkpoint.load_params(str(run)), checkpoint.load_params(str(ref))
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))
