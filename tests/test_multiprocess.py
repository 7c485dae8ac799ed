"""Two processes joined by jax.distributed on localhost train as one process with all their
devices (issue #6): same losses and evaluation, and each process reads only its half of every
global batch."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxssl import reporting

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDER = os.path.join(REPO, "tests", "reads_recorder.py")
STEPS = 4


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _command(workdir, *extra):
  return [sys.executable, RECORDER, "--config=configs/simclr.py:quick", f"--workdir={workdir}",
          f"--config.total_steps={STEPS}", "--config.ckpt_every=2", "--config.log_every=1",
          "--config.eval.baselines=False", *extra]


def _env(devices, reads):
  reads.mkdir()
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              JAXSSL_READS_DIR=str(reads), PYTHONUNBUFFERED="1")


def _reads(directory):
  """{process: {step: [record index, ...]}} from the recorder's files."""
  out = {}
  for name in sorted(os.listdir(directory)):
    rows = reporting.read_jsonl(directory / name)
    out[int(name.split("_")[1].split(".")[0])] = {r["step"]: r["index"] for r in rows}
  return out


def _train_metrics(workdir):
  """Every logged training metric but the wall-clock ones."""
  return [{k: v for k, v in r.items() if k != "examples_per_s"}
          for r in reporting.read_jsonl(workdir / "metrics.jsonl")]


@pytest.mark.slow
def test_two_processes_train_as_one_process_with_their_four_devices(tmp_path):
  port = _free_port()
  procs = [subprocess.Popen(
      _command(tmp_path / "two", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
               f"--process_id={i}"), cwd=REPO, env=_env(2, tmp_path / f"reads_two_{i}"),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  # Every failed process's output: when one dies, the other fails later with a timeout that
  # does not say why.
  failed = [f"process {i} exited with {p.returncode}:\n{out[-3000:]}"
            for i, (p, out) in enumerate(zip(procs, outputs)) if p.returncode]
  assert not failed, "\n\n".join(failed)
  assert "2 process(es)" in outputs[0]
  one = subprocess.run(_command(tmp_path / "one"), cwd=REPO, env=_env(4, tmp_path / "reads_one"),
                       capture_output=True, text=True)
  assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]

  # Same global batches, same mesh shape (data=4): the same numbers step by step, up to float32
  # rounding (the two programs may order a reduction differently).
  two, single = _train_metrics(tmp_path / "two"), _train_metrics(tmp_path / "one")
  assert [r["step"] for r in two] == [r["step"] for r in single] == list(range(1, STEPS + 1))
  for a, b in zip(two, single):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=1e-5)
  final = lambda d: json.load(open(tmp_path / d / "eval" / "final.json"))  # noqa: E731
  assert final("two") == final("one")

  # Each process read its own half of every global batch; together, what one process read.
  halves = {**_reads(tmp_path / "reads_two_0"), **_reads(tmp_path / "reads_two_1")}
  whole = _reads(tmp_path / "reads_one")[0]
  assert sorted(halves) == [0, 1]
  for step in range(STEPS):
    first, second = halves[0][step], halves[1][step]
    assert len(first) == len(second) == len(whole[step]) // 2
    assert not set(first) & set(second)
    assert first + second == whole[step]
