"""The launchers' --dry-run: the local multi-process one prints one command per process, the TPU
pod one every gcloud command, the SLURM one its sbatch script."""
import os
import shlex
import subprocess
import sys

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


def _tpu_pod(*args):
  return subprocess.run(["bash", "launch/tpu_pod.sh", *args], cwd=REPO, capture_output=True,
                        text=True)


def test_tpu_pod_dry_run_all():
  """A v4-32 slice (4 workers): create, copy, install, run on every worker, follow, delete."""
  result = _tpu_pod("--dry-run", "--name=ssl", "--zone=us-central2-b", "--accelerator-type=v4-32",
                    "--project=p", "all", "--config=configs/simclr.py:full", "--workdir=/mnt/w",
                    "--config.optimizer.base_lr=0.5")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  commands = [shlex.split(line) for line in lines]
  assert all(c[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] for c in commands), lines
  assert all("--zone=us-central2-b" in c and "--project=p" in c for c in commands)
  assert [c[4] for c in commands] == ["create", "ssh", "scp", "ssh", "ssh", "ssh", "delete"]
  create, delete = commands[0], commands[-1]
  assert create[5] == "ssl" and "--accelerator-type=v4-32" in create
  assert any(a.startswith("--version=") for a in create)
  assert delete[5] == "ssl" and "--quiet" in delete
  # Everything that touches the workers reaches all of them; logs follows worker 0's log.
  assert all("--worker=all" in c for c in commands[1:5]) and "--worker=0" in commands[5]
  assert "--recurse" in commands[2] and "ssl:~/jaxssl" in commands[2]
  install, run = commands[3][-1], commands[4][-1]
  assert "pip install -e . \"jax[tpu]\"" in install
  assert ("python -m jaxssl.main --config=configs/simclr.py:full --workdir=/mnt/w "
          "--config.optimizer.base_lr=0.5 --distributed > ~/jaxssl.log") in run
  assert "--num_processes" not in run and "--coordinator_address" not in run


def test_tpu_pod_quotes_flags_for_the_workers():
  """The run command is read by two shells, here and on the worker: a quote survives both."""
  result = _tpu_pod("--dry-run", "--name=ssl", "--zone=z", "run", "--config=configs/simclr.py",
                    "--workdir=/mnt/w", "--config.data.tfds_name=it's")
  (command,) = [shlex.split(line) for line in result.stdout.splitlines()]
  assert "--config.data.tfds_name=it's" in shlex.split(command[-1].split("{", 1)[1])


def test_tpu_pod_refuses_missing_arguments():
  for args, message in [((), "--name=name --zone=zone"), (("--name=ssl", "delete"), "--zone"),
                        (("--name=ssl", "--zone=z", "create"), "--accelerator-type"),
                        (("--name=ssl", "--zone=z", "run", "--config=c.py"), "--workdir"),
                        (("--name=ssl", "--zone=z", "start"), "unknown command")]:
    result = _tpu_pod("--dry-run", *args)
    assert result.returncode == 2 and message in result.stderr.lower() and not result.stdout, args


def _slurm(*args):
  return subprocess.run([sys.executable, "launch/slurm.py", "--dry-run", *args], cwd=REPO,
                        capture_output=True, text=True)


def test_slurm_dry_run_one_process_per_gpu():
  """2 nodes x 8 GPUs: 16 processes, each driving the GPU of its local rank."""
  result = _slurm("--nodes=2", "--gpus-per-node=8", "--partition=gpu", "--",
                  "--config=configs/simclr.py:full", "--workdir=/shared/w")
  assert result.returncode == 0, result.stderr
  script, submit = result.stdout.rstrip("\n").rsplit("\n", 1)
  lines = script.splitlines()
  assert lines[0] == "#!/bin/bash"
  for directive in ["--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--partition=gpu",
                    "--output=/shared/w/slurm-%j.out"]:
    assert f"#SBATCH {directive}" in lines
  (srun,) = [line for line in lines if line.startswith("srun ")]
  assert "--nodes=2 --ntasks-per-node=8" in srun
  assert "--output=/shared/w/slurm-%j-%t.out" in srun  # One file per process.
  assert "bash -c 'JAX_LOCAL_DEVICE_IDS=$SLURM_LOCALID exec \"$@\"'" in srun
  assert srun.endswith("python -m jaxssl.main --config=configs/simclr.py:full --workdir=/shared/w "
                       "--num_processes=16")
  assert submit == "sbatch /shared/w/jaxssl.sbatch"
  subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # The script parses.


def test_slurm_dry_run_one_process_per_node():
  """2 nodes x 8 GPUs, one process per node: 2 processes, each driving its node's 8 GPUs."""
  result = _slurm("--nodes=2", "--gpus-per-node=8", "--one-process-per=node", "--",
                  "--config=configs/simclr.py:full", "--workdir=/shared/w")
  lines = result.stdout.splitlines()
  assert "#SBATCH --ntasks-per-node=1" in lines and "#SBATCH --gpus-per-node=8" in lines
  assert "export JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7" in lines
  (srun,) = [line for line in lines if line.startswith("srun ")]
  assert "--ntasks-per-node=1" in srun and "bash -c" not in srun
  assert srun.endswith("python -m jaxssl.main --config=configs/simclr.py:full --workdir=/shared/w "
                       "--num_processes=2")


def test_slurm_refuses_missing_arguments():
  for args, message in [(("--nodes=2", "--", "--config=c.py", "--workdir=w"), "--gpus-per-node"),
                        (("--nodes=2", "--gpus-per-node=8", "--", "--config=c.py"), "--workdir"),
                        (("--nodes=2", "--gpus-per-node=8", "--", "--workdir=w"), "--config")]:
    result = _slurm(*args)
    assert result.returncode == 2 and message in result.stderr and not result.stdout, args
