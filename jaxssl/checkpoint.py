"""Checkpoints: orbax CheckpointManager holding the train state and the input iterator's state.

Layout: <workdir>/checkpoints/<step>/{state, data}. Saving is asynchronous (training goes on while
the files are written); orbax copies device arrays to host before `save` returns, so donating the
state to the next step is safe. A checkpoint directory only appears under its final name once
complete, so a kill mid-save leaves the previous checkpoints loadable.
"""
import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:

  def __init__(self, workdir, keep=3, async_save=True):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
    # Handlers named up front, so that item metadata can be read before any save or restore.
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=dict(
        state=ocp.StandardCheckpointHandler(), data=ocp.JsonCheckpointHandler()))

  def all_steps(self):
    return sorted(self.manager.all_steps())

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step, state, data_state):
    """Saves (state, data_state) at `step` unless already saved. Non-blocking."""
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)), force=True)

  def restore(self, abstract_state, step=None):
    """Restores the newest loadable checkpoint (or exactly `step`) onto `abstract_state`'s
    shardings. Returns (step, state, data_state); (None, None, None) when there is none.

    A checkpoint that fails to load (truncated or corrupted files) is skipped with a warning and
    the next older one is tried, so one bad write never ends a run."""
    steps = [step] if step is not None else self.all_steps()[::-1]
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    for s in steps:
      try:
        restored = self.manager.restore(s, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
      except Exception as e:  # orbax raises many types for damaged files
        if step is not None:
          raise
        logging.warning("checkpoint at step %d could not be restored (%s: %s); trying an older one",
                        s, type(e).__name__, str(e).splitlines()[0][:200])
        continue
      return s, restored["state"], restored["data"]
    return None, None, None

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def load_params(workdir, step=None):
  """(step, raw train state as host numpy) of another run's workdir: its latest checkpoint, or
  exactly `step`. Used by `init_from` and `jaxssl.load`."""
  ckpt = Checkpointer(workdir, async_save=False)
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise FileNotFoundError(f"no checkpoint under {ckpt.directory}; expected the workdir of a "
                              "jaxssl run that saved one")
    if step is not None and step not in steps:
      raise FileNotFoundError(f"no checkpoint at step {step} under {ckpt.directory}; it has "
                              f"steps {steps}")
    step = steps[-1] if step is None else step
    metadata = ckpt.manager.item_metadata(step)["state"]
    restored = ckpt.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(host_target(metadata))))
  finally:
    ckpt.close()
  return step, restored["state"]


def host_target(metadata):
  """NumPy placeholders for the arrays of a StandardSave's metadata tree. Restoring into them
  reads the values into host memory whatever devices wrote them: a run on 8 GPUs loads on a
  1-CPU laptop (without a target, orbax would rebuild the saved 8-device shardings and fail)."""
  tree = getattr(metadata, "tree", metadata)
  return jax.tree.map(lambda m: np.empty(m.shape, m.dtype), tree)
