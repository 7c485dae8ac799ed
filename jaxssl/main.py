"""Entry point: python -m jaxssl.main --config=configs/<name>.py[:variant] [--workdir=DIR] [--config.key=value ...]

Starts the distributed runtime when several processes are configured, validates the config
before anything is compiled, builds the mesh and runs the training loop.
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


def _config_error_hint(argv):
  """ml_collections rejects unknown override keys with a long message; name the key and the
  closest valid one instead."""
  import importlib.util
  from jaxssl import config_base
  for arg in argv[1:]:
    if not arg.startswith("--config.") or "=" not in arg:
      continue
    key = arg[len("--config."):].split("=", 1)[0]
    file, _, variant = _config_arg(argv).partition(":")
    spec = importlib.util.spec_from_file_location("_cfg", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config(variant) if variant else module.get_config()
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
      if not hasattr(node, "keys") or part not in node:
        options = list(node.keys()) if hasattr(node, "keys") else []
        return (f"unknown config key --config.{key}: "
                f"'{'.'.join(parts[:i + 1])}' does not exist{config_base.suggest(part, options)}")
      node = node[part]
  return None


def main(argv):
  del argv
  from jaxssl import config_base
  config = _CONFIG.value
  if (_NUM_PROCESSES.value or 1) > 1 or _COORDINATOR.value:
    import jax
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  import jax
  from jaxssl import sharding, train
  config_base.validate(config, jax.device_count(), jax.process_count())
  mesh = sharding.make_mesh(config.mesh)
  workdir = _WORKDIR.value or default_workdir(_config_arg(sys.argv))
  logging.set_verbosity(logging.WARNING)
  print(f"[{config.method}] workdir: {os.path.abspath(workdir)}", flush=True)
  with jax.set_mesh(mesh):
    train.train_and_evaluate(config, workdir, mesh)


if __name__ == "__main__":
  try:
    flags.FLAGS(sys.argv)
  except flags.Error as e:
    hint = _config_error_hint(sys.argv) if "--config." in " ".join(sys.argv) else None
    print(f"error: {hint or e}", file=sys.stderr)
    sys.exit(2)
  app.run(main)
