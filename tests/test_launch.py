"""The local multi-process launcher prints one correct command per process in --dry-run."""
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_local_launcher_dry_run():
  out = subprocess.run(
      ["bash", "launch/local.sh", "--dry-run", "3", "2", "--config=configs/simclr.py:quick",
       "--workdir=/tmp/w"], cwd=REPO, env=dict(os.environ, JAXSSL_COORDINATOR_PORT="12345"),
      capture_output=True, text=True, check=True).stdout.splitlines()
  assert len(out) == 3
  for i, line in enumerate(out):
    assert "--xla_force_host_platform_device_count=2" in line
    assert "python -m jaxssl.main --config=configs/simclr.py:quick --workdir=/tmp/w" in line
    assert f"--coordinator_address=127.0.0.1:12345 --num_processes=3 --process_id={i}" in line
    assert line.endswith(f"> /tmp/w/process_{i}.log")


def test_local_launcher_requires_workdir():
  result = subprocess.run(["bash", "launch/local.sh", "2", "2", "--config=configs/simclr.py"],
                          cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 2 and "--workdir" in result.stderr
