"""Taking a workdir: writable, not used by another jaxssl process, and not holding another run.

`claim(config, workdir, mode)` runs before anything is compiled and either returns a held lock
(release it when done) or raises one clear error:
  - the workdir cannot be created or written (a file in the way, a read-only disk, ...);
  - another process holds it (an exclusive `flock` on <workdir>/.lock, taken by process 0 of a
    run; the OS drops it when that process dies, even by kill -9, so a stale lock never blocks);
  - it holds checkpoints of a run with another config (the differing keys are named). With
    `config.overwrite` the old run's files are deleted instead and training starts afresh.
"""
import fcntl
import json
import os
import shutil
import tempfile

import jax
from jax.experimental import multihost_utils

from jaxssl import config_base

LOCK_FILE = ".lock"
# Everything a run writes in its workdir (what --config.overwrite deletes).
RUN_FILES = ("checkpoints", "eval", "plots", "tb", "metrics.jsonl", "config.json",
             "data_info.json")


def read_json(path):
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def has_checkpoints(workdir) -> bool:
  ckpt_dir = os.path.join(workdir, "checkpoints")
  return os.path.isdir(ckpt_dir) and any(d.isdigit() for d in os.listdir(ckpt_dir))


class WorkdirInUse(RuntimeError):
  """Another live process holds the workdir's lock."""


class Lock:
  """An exclusive, non-blocking flock on <workdir>/.lock, held until `release`."""

  def __init__(self, workdir):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._file = open(self.path, "a+")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      owner = self._file.read().strip() or "unknown"
      self._file.close()
      raise WorkdirInUse(f"workdir {workdir} is in use by another jaxssl process (pid {owner}); "
                         "wait for it to finish, stop it, or use another --workdir") from None
    self._file.truncate(0)
    self._file.write(str(os.getpid()))
    self._file.flush()

  def release(self):
    if not self._file.closed:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()


def claim(config, workdir, mode="train"):
  """The checks of the module docstring; returns the held `Lock` (None on processes > 0, which
  share process 0's workdir in multi-process runs)."""
  try:
    os.makedirs(workdir, exist_ok=True)
    # A fresh name (O_EXCL): the processes of a multi-host run share the workdir, and processes
    # in containers on different hosts often have the same pid.
    fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=workdir)
    try:
      os.write(fd, b"ok")
    finally:
      os.close(fd)
      os.remove(probe)
  except OSError as e:
    raise PermissionError(f"cannot write to workdir {workdir} ({e.strerror or e}); choose "
                          "another --workdir") from None
  lock = Lock(workdir) if jax.process_index() == 0 else None
  try:
    diffs = _differences_from_saved_run(config, workdir)
    if jax.process_count() > 1:
      # Every process has read the workdir before process 0 changes it (deletes the old run
      # below, writes config.json next), so all of them take the same branch.
      multihost_utils.sync_global_devices("jaxssl.workdir.claim")
    if diffs:
      _overwrite_or_refuse(config, workdir, mode, diffs)
  except BaseException:
    if lock:
      lock.release()
    raise
  return lock


def _differences_from_saved_run(config, workdir):
  """'key: saved -> now' for each config field that differs from the run checkpointed in the
  workdir (empty when there is none)."""
  if not has_checkpoints(workdir):
    return []
  path = os.path.join(workdir, "config.json")
  try:
    saved = read_json(path)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}), so the checkpoints beside it cannot be "
                     "checked against this config; use a new --workdir") from None
  return [] if saved is None else config_base.resume_differences(saved, config)


def _overwrite_or_refuse(config, workdir, mode, diffs):
  """Resuming a workdir with another config would silently mix two runs: fail, naming the keys
  (or, with config.overwrite when training, delete the old run)."""
  if config.get("overwrite") and mode == "train":
    if jax.process_index() == 0:
      for name in RUN_FILES:
        path = os.path.join(workdir, name)
        if os.path.isdir(path):
          shutil.rmtree(path)
        elif os.path.exists(path):
          os.remove(path)
    if jax.process_count() > 1:  # Nobody reads the workdir before process 0 has emptied it.
      multihost_utils.sync_global_devices("jaxssl.workdir.overwrite")
    print(f"[workdir] overwrite: deleted the run in {workdir} ({'; '.join(diffs)})", flush=True)
    return
  raise ValueError(f"workdir {workdir} holds a run with another config ({'; '.join(diffs)}). "
                   "Use a new --workdir, rerun with that run's config to resume it, or set "
                   "--config.overwrite=True to delete it and start afresh.")
