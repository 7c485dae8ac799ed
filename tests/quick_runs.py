"""Quick training runs shared by tests: a finished SimCLR quick run (the resume tests and the
pretrained-model tests) and `train_on_one_device`."""
import os
import subprocess
import sys

import jax
import pytest

from jaxssl import config_base, sharding, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def simclr_quick_command(workdir, *extra):
  """The command of the shared run: 24 steps, a checkpoint every 4 (the last 3 kept)."""
  return [sys.executable, "-m", "jaxssl.main", "--config=configs/simclr.py:quick",
          f"--workdir={workdir}", "--config.total_steps=24", "--config.ckpt_every=4",
          "--config.log_every=1", "--config.eval.baselines=False", *extra]


@pytest.fixture(scope="session")
def simclr_quick_run(tmp_path_factory):
  """(workdir of a finished, never interrupted run; env for the runs that repeat it).

  Tests may read the workdir, not change it. The runs share the session's compilation cache
  (conftest.py): every run after the first loads the step instead of compiling it."""
  root = tmp_path_factory.mktemp("simclr_quick")
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  assert env["JAXSSL_CACHE_DIR"]
  subprocess.run(simclr_quick_command(root / "run"), cwd=REPO, env=env, check=True,
                 capture_output=True)
  return root / "run", env


def train_on_one_device(config, workdir):
  """Trains and evaluates `config` in this process on the first device; returns the final
  metrics. For checks of what a run does, not of sharding (8 fake devices on 2 cores are
  slow; the 8-device loss tests cover the sharding)."""
  config_base.validate(config, 1)
  mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
  with jax.set_mesh(mesh):
    return train.train_and_evaluate(config, str(workdir), mesh)
