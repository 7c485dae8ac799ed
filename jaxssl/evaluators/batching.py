"""Runs a jitted function over a held-out array set in sharded batches (shared by evaluators)."""
import jax
import numpy as np

from jaxssl import sharding


def round_batch_size(batch_size, mesh):
  """Eval batches are split over every device, so their size must be a multiple of the count."""
  return -(-batch_size // mesh.size) * mesh.size


def apply_in_batches(fn, arrays: dict, mesh, batch_size):
  """fn(dict of global (b, ...) arrays) -> pytree of replicated (b, ...) arrays, over all N rows
  of `arrays` (host numpy, equal leading sizes); returns that pytree as host arrays (N, ...).

  The last batch is zero-padded to `batch_size` (one compiled shape) and the padding dropped.
  Every process holds the whole eval set, so each device slice is cut from local memory.
  """
  n = len(next(iter(arrays.values())))
  outputs = []
  for lo in range(0, n, batch_size):
    batch = {}
    for key, value in arrays.items():
      chunk = value[lo:lo + batch_size]
      if len(chunk) < batch_size:
        chunk = np.concatenate([chunk, np.zeros((batch_size - len(chunk),) + chunk.shape[1:],
                                                chunk.dtype)])
      batch[key] = jax.make_array_from_callback(
          chunk.shape, sharding.batch_sharding(mesh, chunk.ndim), lambda idx, c=chunk: c[idx])
    outputs.append(jax.device_get(fn(batch)))
  return jax.tree.map(lambda *parts: np.concatenate(parts)[:n], *outputs)
