"""MoCo's queue of negative keys (He et al., CVPR 2020; Chen et al., "Improved Baselines", 2020).

The queue lives in model_state as {"keys": (K, D) float32, "ptr": int32 scalar}: rows [ptr, ptr+B)
are the oldest and are overwritten by the next batch. Methods enqueue the keys of the GLOBAL batch
(under jit the (B, D) keys array is the whole batch even when its rows live on different devices),
so the queue, which is replicated, holds the same rows whatever the device count. In MoCo's
PyTorch code each process gathers the keys of all GPUs before enqueueing, to the same effect.
"""
import jax
import jax.numpy as jnp


def check_size(size, batch_size):
  """Raises unless the batch tiles the queue, so that a batch never wraps around its end."""
  if size <= 0 or size % batch_size:
    raise ValueError(f"queue size {size} must be a positive multiple of the global batch size "
                     f"{batch_size} (MoCo's assert K % batch_size == 0)")


def init_queue(rng, size, dim):
  """Random unit-norm rows, as MoCo initialises its queue (it is overwritten after K / B steps)."""
  keys = jax.random.normal(rng, (size, dim), jnp.float32)
  keys = keys / jnp.linalg.norm(keys, axis=1, keepdims=True)
  return {"keys": keys, "ptr": jnp.zeros((), jnp.int32)}


def enqueue(queue, keys):
  """Writes the (B, D) `keys` (not differentiated, in the queue's dtype) over the oldest B rows."""
  size, batch = queue["keys"].shape[0], keys.shape[0]
  check_size(size, batch)
  ptr = queue["ptr"]
  new = jax.lax.dynamic_update_slice(
      queue["keys"], jax.lax.stop_gradient(keys).astype(queue["keys"].dtype), (ptr, 0))
  return {"keys": new, "ptr": (ptr + batch) % size}
