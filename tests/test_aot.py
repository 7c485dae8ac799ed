"""The ahead-of-time compile check (`--compile_only`, jaxssl.aot) and its data-free batch."""
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import mmv, simclr
from jaxssl import aot
from jaxssl.data import pipeline, sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("module", [simclr, mmv])
def test_abstract_batch_is_what_the_pipeline_delivers(module):
  config = module.get_config("quick")
  source = sources.get_source(config.dataset, "train", config.data)
  dataset = pipeline.train_dataset(source, global_batch=config.batch_size, seed=0,
                                   image_size=config.data.image_size)
  real = dict(dataset[0])
  real.pop("bad_records")  # Counted and dropped by the loop before the step.
  abstract = aot.abstract_batch(config)
  # As the step sees them: int64 indices become int32 on the device (jax's default x64 off).
  shapes = lambda tree: {k: (v.shape, jax.dtypes.canonicalize_dtype(v.dtype))  # noqa: E731
                         for k, v in tree.items()}
  assert shapes(abstract) == {k: v for k, v in shapes(real).items() if k in abstract}
  # Keys the pipeline has beyond these are avshapes' evaluation-only factors (never trained on).
  assert set(real) - set(abstract) <= {"motion", "colour", "size", "speed", "background",
                                       "events", "event_times"}


def test_compile_only_reports_memory_and_flops_of_a_sharded_step():
  run = subprocess.run([sys.executable, "-m", "jaxssl.main", "--config=configs/simclr.py:quick",
                        "--compile_only", "--fake_devices=8", "--config.mesh.preset=fsdp"],
                       cwd=REPO, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  out = run.stdout
  assert "mesh {'data': 1, 'fsdp': 8, 'model': 1} over 8 x cpu" in out, out
  assert "online probe: 10 classes" in out
  flops = re.search(r"FLOPs per step: ([\d.e+]+) GFLOP per device, ([\d.e+]+) GFLOP on all 8", out)
  assert flops and float(flops[1]) > 0 and np.isclose(float(flops[2]), 8 * float(flops[1]),
                                                     rtol=1e-3), out
  assert re.search(r"per device: [\d.]+ [KMG]?i?B \(arguments", out), out
  assert "workdir" not in out  # Nothing is trained or written.
