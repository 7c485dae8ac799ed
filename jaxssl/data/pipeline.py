"""Host input pipeline: the global batch at step s is a pure function of (seed, s).

Why: training must be resumable and its data order must not depend on how many hosts or
devices run it. So the record order is an explicit index stream (one seeded permutation per
epoch), global batch s is the slice [s*B, (s+1)*B) of that stream, and each process loads only
its contiguous part of it. The grain dataset is `MapDataset.range(steps).map(load_slice)`:
element s is computed directly from s, so a checkpoint is just "next step", and restarting,
resharding or changing the number of data workers never changes what a step sees.

Host-side work is only what makes records stackable (grayscale -> RGB, resize to one size);
augmentation runs on device.
"""
import functools
import sys

import grain
import numpy as np

from jaxssl.data import CorruptRecord

# Element count of the training dataset: unbounded in practice (2**40 steps), yet a plain int
# so `len()` and grain's index bookkeeping keep working.
_MAX_STEPS = 2**40


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed, epoch, num_groups):
  """Group order of one epoch; cached because consecutive steps hit the same epoch."""
  return np.random.default_rng([seed, epoch]).permutation(num_groups)


def global_batch_indices(step: int, *, global_batch: int, num_records: int, seed: int,
                         group_size: int = 1) -> np.ndarray:
  """Record indices (global_batch,) int64 of global batch `step`.

  Records come in groups of `group_size` consecutive indices (1: every record alone) that a
  batch keeps whole and in order, e.g. avshapes' scenes, whose clips are each other's hard
  negatives. Position p = step * global_batch + j of the stream is member p % G of group
  perm(seed, q // M)[q % M], q = p // G, M = num_records // G groups: each epoch visits every
  record once, in a fresh order of groups.
  """
  if num_records % group_size or global_batch % group_size:
    raise ValueError(f"records come in groups of {group_size}: num_records ({num_records}) and "
                     f"the global batch ({global_batch}) must be multiples of it")
  num_groups = num_records // group_size
  group, member = np.divmod(step * global_batch + np.arange(global_batch, dtype=np.int64),
                            group_size)
  epoch, offset = np.divmod(group, num_groups)
  out = np.empty(global_batch, np.int64)
  for e in range(int(epoch[0]), int(epoch[-1]) + 1):  # A batch spans one epoch, rarely more.
    sel = epoch == e
    out[sel] = _epoch_permutation(seed, e, num_groups)[offset[sel]] * group_size + member[sel]
  return out


@functools.lru_cache(maxsize=16)
def _resize_matrix(in_size, out_size):
  """(out, in) weights of a triangle (bilinear) filter, widened when shrinking to antialias."""
  scale = in_size / out_size
  centres = (np.arange(out_size) + 0.5) * scale - 0.5
  dist = np.abs(np.arange(in_size)[None, :] - centres[:, None]) / max(scale, 1.0)
  weights = np.maximum(0.0, 1.0 - dist)
  return (weights / weights.sum(1, keepdims=True)).astype(np.float32)


def preprocess(images: np.ndarray, image_size: int) -> np.ndarray:
  """uint8 (N, H, W, C in {1, 3}) -> uint8 (N, image_size, image_size, 3); float images in
  [0, 1] stay float32 (not rounded).

  Bilinear resize as two matrix products over the whole batch (separable filter; equal to
  jax.image.resize(..., "bilinear", antialias=True) up to rounding), done before the grayscale
  -> RGB repeat so that grayscale data are resized once, not three times.
  """
  _, h, w, c = images.shape
  if (h, w) != (image_size, image_size):
    rows, cols = _resize_matrix(h, image_size), _resize_matrix(w, image_size)
    out = np.einsum("yh,nhwc,xw->nyxc", rows, images.astype(np.float32), cols, optimize=True)
    images = (np.clip(np.rint(out), 0, 255).astype(np.uint8) if images.dtype == np.uint8
              else np.clip(out, 0.0, 1.0))
  if c == 1:
    images = np.repeat(images, 3, axis=-1)
  return images


def read_records(source, indices, bad_records="skip"):
  """(source.get_batch(indices), bad (len(indices),) bool) with corrupt records handled per
  `bad_records`: "strict" lets the CorruptRecord error (naming the record) through; "skip"
  replaces each corrupt record by the next index (mod the source's size) that decodes, so a
  batch keeps its size and still depends only on its indices, and flags it in `bad`."""
  try:
    return source.get_batch(indices), np.zeros(len(indices), bool)
  except CorruptRecord:
    if bad_records == "strict":
      raise
  records, bad = [], np.zeros(len(indices), bool)
  for k, index in enumerate(indices):
    for offset in range(len(source)):
      try:
        records.append(source[(int(index) + offset) % len(source)])
        break
      except CorruptRecord as e:
        bad[k] = True
        print(f"[data] skipped: {e}", file=sys.stderr, flush=True)
    else:
      raise ValueError(f"every record of {source.name}/{source.split} is corrupt")
  return {key: np.stack([r[key] for r in records]) for key in records[0]}, bad


def _group_size(source) -> int:
  """Records per group that batches keep whole: a source's `group_size`, else 1."""
  return getattr(source, "group_size", 1)


def _load_slice(step, *, source, global_batch, seed, image_size, process_index,
                process_count, bad_records):
  """This process's part of global batch `step`, as stacked numpy arrays, plus `bad_records`
  (int32 (L,), 1 where a corrupt record was replaced; the loop counts and drops it)."""
  size = global_batch // process_count
  indices = global_batch_indices(step, global_batch=global_batch, num_records=len(source),
                                 seed=seed, group_size=_group_size(source))
  indices = indices[process_index * size:(process_index + 1) * size]
  records, bad = read_records(source, indices, bad_records)
  batch = dict(records, index=indices, bad_records=bad.astype(np.int32))
  # Image datasets come in mixed sizes and channel counts; other modalities (video, audio, text
  # of multimodal sources) are generated at their final shape and pass through unchanged.
  if "image" in batch:
    batch["image"] = preprocess(batch["image"], image_size)
  return batch


def train_dataset(source, *, global_batch: int, seed: int, image_size: int,
                  process_index: int = 0, process_count: int = 1,
                  bad_records: str = "skip") -> grain.MapDataset:
  """Element s: dict(image uint8 (L, S, S, 3), label int32 (L,), index int64 (L,), plus any other
  fields the source's records carry (e.g. video, audio, text).

  L = global_batch // process_count; element s is rows [process_index*L, (process_index+1)*L)
  of global batch s, identical whatever process_count is.
  """
  if global_batch % process_count:
    raise ValueError(f"global_batch {global_batch} is not divisible by process_count "
                     f"{process_count}")
  global_batch_indices(0, global_batch=global_batch, num_records=len(source), seed=seed,
                       group_size=_group_size(source))  # Fails now, not in a data worker.
  load = functools.partial(_load_slice, source=source, global_batch=global_batch, seed=seed,
                           image_size=image_size, process_index=process_index,
                           process_count=process_count, bad_records=bad_records)
  return grain.MapDataset.range(_MAX_STEPS).map(load)


class TrainIterator(grain.DatasetIterator):
  """Iterator over training steps whose whole state is the next step, {"next_step": s}.

  Why not grain's own iterator state: with several worker processes grain interleaves one
  iterator per worker, so its state depends on num_workers, and it cannot be positioned at an
  arbitrary step (set_next_index is unsupported there). Element s depends only on s, so the
  next step is a complete state: setting it rebuilds the grain pipeline from that step, for any
  num_workers, and a checkpoint stays valid when num_workers or the grain version changes.
  Subclasses grain.DatasetIterator so grain.checkpoint.CheckpointSave/Restore accept it.
  """

  def __init__(self, dataset, start_step, num_workers, prefetch):
    super().__init__()
    self._dataset, self._num_workers, self._prefetch = dataset, num_workers, prefetch
    self._it = None
    self._restart(start_step)

  def _restart(self, step):
    if self._it is not None:
      self._it.close()
    self._next_step = step
    # Within a process batches are loaded one at a time (num_threads=0): loading is numpy or
    # per-record Python, where more threads only contend for the GIL.
    ds = self._dataset[step:].to_iter_dataset(
        grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    if self._num_workers > 0:
      ds = ds.mp_prefetch(grain.MultiprocessingOptions(
          num_workers=self._num_workers, per_worker_buffer_size=self._prefetch))
    else:
      ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=self._prefetch)
    self._it = iter(ds)

  def __next__(self):
    element = next(self._it)
    self._next_step += 1
    return element

  def get_state(self):
    return {"next_step": self._next_step}

  def set_state(self, state):
    if state["next_step"] != self._next_step:  # Equal: the running pipeline is already there.
      self._restart(int(state["next_step"]))

  def _get_next_index(self):
    return self._next_step

  def _set_next_index(self, index):
    self.set_state({"next_step": index})

  def start_prefetch(self):
    self._it.start_prefetch()

  def close(self):
    self._it.close()
    super().close()


def train_iterator(dataset: grain.MapDataset, *, start_step: int = 0, num_workers: int = 0,
                   prefetch: int = 2) -> TrainIterator:
  """Checkpointable iterator over `dataset` (from `train_dataset`) from step `start_step` on.

  num_workers > 0 loads batches in that many processes, each prefetching `prefetch` batches;
  0 prefetches `prefetch` batches in one background thread. Build the dataset inside a
  function: worker processes re-import `__main__`. Close the iterator to stop the workers.
  """
  return TrainIterator(dataset, start_step, num_workers, prefetch)


def load_arrays(source, *, image_size: int, max_examples: int | None = None,
                chunk: int = 4096, bad_records: str = "skip") -> dict:
  """The first `max_examples` records (all if None), every field stacked: image uint8 (N, S, S, 3)
  and label int32 (N,) for image sources; video, audio, text, label, ... for clip sources.

  For evaluators, with the same host preprocessing as training (images resized; other fields
  as the source gives them); read in chunks so the float resize buffer stays small. Corrupt
  records are left out (or stop it, with bad_records="strict").
  """
  num = len(source) if max_examples is None else min(max_examples, len(source))
  parts = [read_records(source, np.arange(lo, min(lo + chunk, num)), bad_records)
           for lo in range(0, num, chunk)]
  good = np.concatenate([~bad for _, bad in parts])  # Corrupt records are left out here.
  arrays = {k: np.concatenate([p[k] for p, _ in parts])[good] for k in parts[0][0]}
  if "image" in arrays:
    arrays["image"] = preprocess(arrays["image"], image_size)
  return arrays
