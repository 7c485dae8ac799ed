"""Submits jaxssl as a multi-node GPU job to SLURM: writes an sbatch script and runs sbatch.

  python launch/slurm.py [--dry-run] --nodes=N --gpus-per-node=G [options] -- \\
      --config=configs/<name>.py[:variant] --workdir=DIR [jaxssl.main flags ...]

  python launch/slurm.py --nodes=2 --gpus-per-node=8 --partition=gpu --time=24:00:00 -- \\
      --config=configs/simclr.py:full --workdir=/shared/runs/simclr

The script goes to DIR/jaxssl.sbatch, its own log to DIR/slurm-<jobid>.out and each process's
output to DIR/slurm-<jobid>-<task>.out (task 0's has the progress and evaluations; in one file,
every line would come once per process); --dry-run prints the script and the sbatch command
instead. DIR (relative: to this repository) and this checkout
must be on a filesystem that every node sees: each process writes its checkpoint shards to DIR.

Every task runs `python -m jaxssl.main ... --num_processes=P`, which makes jaxssl call
jax.distributed.initialize; JAX reads the rest from SLURM's variables (process index from
SLURM_PROCID, coordinator: the first node of the step, on a port derived from the job id). Which
GPUs a process drives is JAX_LOCAL_DEVICE_IDS, read by jax.distributed.initialize:
  --one-process-per=gpu (default)  G tasks per node, P = N * G; task i of a node drives GPU
                                   SLURM_LOCALID only.
  --one-process-per=node           1 task per node, P = N; it drives all G GPUs of its node
                                   (without the variable JAX would give it GPU SLURM_LOCALID=0 only).
Tasks see every GPU of their node (--gpu-bind=none): with SLURM binding one GPU per task, its
CUDA_VISIBLE_DEVICES would hold one GPU and index SLURM_LOCALID would not exist.
"""
import argparse
import os
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flag_value(flags, name):
  values = [f.split("=", 1)[1] for f in flags if f.startswith(f"--{name}=")]
  return values[-1] if values else None


def sbatch_script(args, flags, workdir):
  """The text of the sbatch script: a job of args.nodes nodes running jaxssl.main with `flags`."""
  per_gpu = args.one_process_per == "gpu"
  tasks_per_node = args.gpus_per_node if per_gpu else 1
  num_processes = args.nodes * tasks_per_node
  sbatch = dict(job_name=args.job_name, nodes=args.nodes, ntasks_per_node=tasks_per_node,
                gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task,
                partition=args.partition, account=args.account, time=args.time,
                output=os.path.join(workdir, "slurm-%j.out"))
  lines = ["#!/bin/bash",
           f"# jaxssl on {args.nodes} node(s) x {args.gpus_per_node} GPU(s), one process per "
           f"{args.one_process_per}: {num_processes} process(es). Written by launch/slurm.py."]
  lines += [f"#SBATCH --{k.replace('_', '-')}={v}" for k, v in sbatch.items() if v]
  lines += ["set -euo pipefail", f"cd {shlex.quote(REPO)}"]
  lines += [args.setup] if args.setup else []
  # srun takes the task geometry again: since SLURM 22.05 it no longer inherits --cpus-per-task.
  srun = ["srun", f"--nodes={args.nodes}", f"--ntasks-per-node={tasks_per_node}",
          "--gpu-bind=none", "--kill-on-bad-exit=1",
          "--output=" + os.path.join(workdir, "slurm-%j-%t.out")]
  srun += [f"--cpus-per-task={args.cpus_per_task}"] if args.cpus_per_task else []
  jaxssl = ["python", "-m", "jaxssl.main", *flags, f"--num_processes={num_processes}"]
  if per_gpu:
    # The variable differs between the tasks of a node: set it in each task's own shell.
    srun += ["bash", "-c", 'JAX_LOCAL_DEVICE_IDS=$SLURM_LOCALID exec "$@"', "bash"]
  else:
    lines.append("export JAX_LOCAL_DEVICE_IDS=" + ",".join(map(str, range(args.gpus_per_node))))
  lines.append(shlex.join(srun + jaxssl))
  return "\n".join(lines) + "\n"


def main(argv):
  parser = argparse.ArgumentParser(
      prog="launch/slurm.py", description=__doc__.split("\n\n", 1)[0],
      usage="python launch/slurm.py [--dry-run] --nodes=N --gpus-per-node=G [options] -- "
            "--config=configs/<name>.py --workdir=DIR [jaxssl.main flags ...]")
  parser.add_argument("--dry-run", action="store_true", help="print the script and the command")
  parser.add_argument("--nodes", type=int, required=True)
  parser.add_argument("--gpus-per-node", type=int, required=True)
  parser.add_argument("--one-process-per", choices=("gpu", "node"), default="gpu")
  parser.add_argument("--job-name", default="jaxssl")
  parser.add_argument("--partition")
  parser.add_argument("--account")
  parser.add_argument("--time", help="wall-clock limit, e.g. 24:00:00")
  parser.add_argument("--cpus-per-task", type=int, help="CPU cores of each process")
  parser.add_argument("--setup", help="shell line run before srun, e.g. 'source venv/bin/activate'")
  parser.add_argument("flags", nargs="*", help="jaxssl.main flags, after --")
  args = parser.parse_args(argv)
  if args.nodes < 1 or args.gpus_per_node < 1:
    parser.error("--nodes and --gpus-per-node must be at least 1")
  if _flag_value(args.flags, "config") is None:
    parser.error("pass --config=configs/<name>.py after --")
  workdir = _flag_value(args.flags, "workdir")
  if workdir is None:
    parser.error("pass --workdir=DIR after -- (one directory that every node sees)")
  workdir = os.path.join(REPO, workdir)  # The job runs in REPO: relative paths start there.
  script = sbatch_script(args, args.flags, workdir)
  path = os.path.join(workdir, "jaxssl.sbatch")
  if args.dry_run:
    print(script)
    print(shlex.join(["sbatch", path]))
    return
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    f.write(script)
  subprocess.run(["sbatch", path], check=True)


if __name__ == "__main__":
  main(sys.argv[1:])
