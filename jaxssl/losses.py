"""Self-supervised losses as pure functions, one per paper.

Conventions shared by every function here:
- Inputs are batched arrays whose leading axis is the **global** batch. Under `jax.jit` with a
  sharded batch, XLA inserts the cross-device collectives, so a loss written over the whole batch
  is automatically the global-batch loss (the 1-device and N-device results agree up to float
  reassociation).
- All arithmetic is done in float32 whatever the input dtype (bf16 activations are cast first):
  the logsumexp of contrastive logits loses too much precision in bf16.
- Each docstring names the paper, the direction(s) computed and the scale, so methods compose
  symmetric variants themselves.
"""
import jax
import jax.numpy as jnp


def l2_normalize(x, axis=-1, eps=1e-12):
  """x / max(||x||, eps), the normalisation used by SimCLR/MoCo (torch.nn.functional.normalize)."""
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
  return x / jnp.maximum(norm, eps)


def nt_xent(z1, z2, temperature=0.1):
  """NT-Xent, SimCLR's loss (Chen et al., ICML 2020, eq. 1 and Alg. 1).

  z1, z2: (N, D) projections of two views of the same N examples. The 2N vectors are L2-normalised;
  for each of the 2N anchors the positive is the other view of the same example and the negatives
  are the remaining 2N - 2 vectors (the anchor itself is excluded from the denominator):

    l(i, j) = -log( exp(s_ij / t) / sum_{k != i} exp(s_ik / t) ),   s = cosine similarity

  Returns the mean over all 2N anchors (Alg. 1's 1/(2N) sum over both orderings), a float32 scalar.
  """
  if z1.shape != z2.shape or z1.ndim != 2:
    raise ValueError(f"nt_xent expects two (N, D) arrays of equal shape, got {z1.shape}, {z2.shape}")
  n = z1.shape[0]
  z = l2_normalize(jnp.concatenate([z1, z2], axis=0))
  logits = (z @ z.T) / temperature
  # The anchor's similarity with itself is removed from the softmax, not just from the labels.
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
  positive = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(0, n)])
  log_prob = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_prob, positive[:, None], axis=-1))


def contrastive_accuracy(z1, z2):
  """Fraction of anchors in z1 whose nearest z2 (cosine) is their own positive: a cheap training
  signal that, unlike the loss value, is comparable across batch sizes and temperatures."""
  sim = l2_normalize(z1) @ l2_normalize(z2).T
  return jnp.mean(jnp.argmax(sim, axis=-1) == jnp.arange(z1.shape[0]))
