"""Entry point: python -m jaxssl.main --config=configs/<name>.py[:variant] [--workdir=DIR] [--config.key=value ...]

Starts the distributed runtime when several processes are configured, validates the config
before anything is compiled, builds the mesh and runs the training loop; with --mode=eval it
evaluates the workdir's checkpoint(s) instead (`--config` may then be left out: the workdir's
config.json is used). Compiled programs are kept in a persistent cache ($JAXSSL_CACHE_DIR, default
~/.cache/jaxssl/xla; JAXSSL_CACHE_DIR="" turns it off), so a rerun does not compile them again.

  --compile_only [--fake_devices=N]   compile the train step for the mesh, print memory and FLOPs
  --distributed                       one process of a TPU-pod / SLURM / MPI job (launch/)
  --coordinator_address=H:P --num_processes=N --process_id=I   processes started by hand
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/simclr.py:quick.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: workdirs/<config>[_<variant>]).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 (multi-process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Index of this process (multi-process).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join the processes of a cluster job: jax.distributed.initialize() "
    "detects the coordinator, process count and index on Cloud TPU pods, SLURM, Open MPI and "
    "Kubernetes (the three flags above override what it detects).")
_COMPILE_ONLY = flags.DEFINE_bool(
    "compile_only", False, "Lower and compile the train step for the config's mesh from shapes "
    "alone and print its memory per device and FLOPs per step (jaxssl.aot); nothing is trained "
    "or written.")
_FAKE_DEVICES = flags.DEFINE_integer(
    "fake_devices", 0, "Run on this many CPU devices instead of the machine's accelerators "
    "(for --compile_only: a pod's mesh checked on one host).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"],
                          "train (then evaluate), or eval: evaluate checkpoints without training.")
_EVAL_STEP = flags.DEFINE_string("eval_step", "", "--mode=eval: a checkpoint step, or 'all' "
                                 "(default: the latest).")


def default_workdir(config_arg):
  path, _, variant = config_arg.partition(":")
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("workdirs", stem + (f"_{variant}" if variant else ""))


def _config_arg(argv):
  """The value of --config (file[:variant]) as given on the command line."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg[len("--config="):]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  raise ValueError("--config=configs/<name>.py is required")


def _enable_compilation_cache():
  """JAX's persistent compilation cache, on by default: a rerun of a config (a resume,
  --mode=eval, the same config in another workdir) loads its compiled train step and evaluators
  instead of compiling them again (the step alone takes 10-30 s on a 2-core CPU).

  The directory is $JAXSSL_CACHE_DIR, ~/.cache/jaxssl/xla by default; JAXSSL_CACHE_DIR="" turns
  the cache off. Without JAXSSL_CACHE_DIR, a cache set up by JAX's own JAX_COMPILATION_CACHE_DIR
  (and JAX_PERSISTENT_CACHE_* variables) is left as it is."""
  import jax
  directory = os.environ.get("JAXSSL_CACHE_DIR")
  if directory is None and jax.config.jax_compilation_cache_dir:
    return
  if directory == "":
    jax.config.update("jax_enable_compilation_cache", False)
    return
  jax.config.update("jax_compilation_cache_dir",
                    os.path.expanduser(directory or os.path.join("~", ".cache", "jaxssl", "xla")))
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    # Measured on 2 cores (simclr.py:quick): init 14 s and the train step 11 s to compile, the
    # evaluators' embed and probe jits 0.3-0.7 s, some twenty small ones < 0.1 s. Caching the
    # evaluators' too (JAX's default threshold is 1 s) saves ~1 s a run for tens of kB each; the
    # small ones would cost more in files and lookups than they save.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.25)


def main(argv):
  from jaxssl import workdir
  try:
    _main(argv)
  except (FileNotFoundError, PermissionError, workdir.WorkdirInUse) as e:
    # A wrong path (workdir, checkpoint, data) or a busy workdir: one line, no traceback.
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def _main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # before jax starts: no "Unable to initialize backend" noise
  from jaxssl import config_base
  config = _CONFIG.value
  if config is None:
    from jaxssl import pretrained
    if _MODE.value != "eval" or not _WORKDIR.value:
      raise app.UsageError("--config=configs/<name>.py is required (only --mode=eval with "
                           "--workdir can take the workdir's config)")
    config = pretrained.read_config(_WORKDIR.value)
  import jax
  if _FAKE_DEVICES.value:  # Before anything starts the backend.
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", _FAKE_DEVICES.value)
  if _DISTRIBUTED.value or (_NUM_PROCESSES.value or 1) > 1 or _COORDINATOR.value:
    # The devices a process drives: JAX_LOCAL_DEVICE_IDS if set (launch/slurm.py), else JAX's
    # default (under SLURM: GPU $SLURM_LOCALID, one process per GPU).
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  _enable_compilation_cache()
  from jaxssl import sharding, train
  config_base.validate(config, jax.device_count(), jax.process_count())
  mesh = sharding.make_mesh(config.mesh)
  if _COMPILE_ONLY.value:
    from jaxssl import aot
    with jax.set_mesh(mesh):
      print(aot.format_report(aot.compile_train_step(config, mesh)[1]), flush=True)
    return
  workdir = _WORKDIR.value or default_workdir(_config_arg(sys.argv))
  print(f"[{config.method}] workdir: {os.path.abspath(workdir)}", flush=True)
  with jax.set_mesh(mesh):
    if _MODE.value == "eval":
      train.evaluate_workdir(config, workdir, mesh, _EVAL_STEP.value)
    else:
      train.train_and_evaluate(config, workdir, mesh)


def _parse_flags(argv):
  """absl's parser, turning a bad --config.* override into one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as e:
    message = str(e.args[0] if e.args else e)
    message = message.strip().splitlines()[-1] if "Traceback" in message else message
    message = message.replace("\\n", " ").replace("\n", " ").replace("\\'", "'").strip()
    if len(message) > 1 and message[0] == message[-1] and message[0] in "'\"":
      message = message[1:-1]  # The repr quotes of a KeyError's message.
    if isinstance(e, (AttributeError, KeyError)):  # ml_collections: unknown key, with "Did you mean"
      message = f"unknown config key {message}"
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
