"""Multi-head dot-product attention for the ViTs (flax's `attention_fn`).

On accelerators: `jax.nn.dot_product_attention`, which lets XLA (or cuDNN) fuse it. On CPU,
XLA's version materialises the (B, heads, T, T) scores of the whole batch and keeps the
probabilities for the backward pass: memory-bound passes over tensors far larger than the
caches. There, `looped_attention` goes through the batch a few examples at a time (scores that
fit in cache) and its backward pass recomputes the probabilities instead of storing them, as
flash attention does. Measured on the 2-core CPU, MAE's decoder shape (batch 16, 197 tokens, 16
heads of 32), forward + backward: 151 ms -> 87 ms (PyTorch's fused CPU kernel: 56 ms). The
backward pass then reuses the forward's row statistics, as FlashAttention-2 does, instead of two
reductions over the keys per row: 127 -> 117 ms, best of 25 interleaved runs on a slower day
(PyTorch 69-79 ms that day); the MAE ViT-Tiny step moved less than this machine's noise.
Heads-major layout once per batch instead of per loop step, and a backward pass whose transposes
fall on (T, D) operands rather than (T, T) matrices (see `_backward_group`): 89 -> 62-72 ms
(PyTorch 46 ms that day), a decoder block -16 ms, the MAE ViT-Tiny step -51 ms (medians of
paired runs).

`SelfAttention` is flax's `nn.MultiHeadDotProductAttention` for self-attention with the same
parameters (names, shapes, initial values, logical axes), its projections run as plain 2D
matmuls.
"""
import contextlib
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


_XLA_EVERYWHERE = [False]


@contextlib.contextmanager
def xla_everywhere():
  """Steps traced inside use jax.nn's attention on every backend. XLA's cost analysis counts a
  loop's body once, so `jaxssl.bench` counts a CPU step's FLOPs on such a trace. It changes how
  a function is traced, not what jit has cached: trace a fresh jitted function inside it (as
  `aot.compile_train_step` does, building its own step)."""
  _XLA_EVERYWHERE[0] = True
  try:
    yield
  finally:
    _XLA_EVERYWHERE[0] = False


def dot_product_attention(query, key, value, mask=None):
  """softmax(q k^T / sqrt(head_dim)) v over (B, T, heads, head_dim) inputs. `mask` is named
  so that flax passes it rather than dropping it: none of the ViTs uses one."""
  if mask is not None:
    raise NotImplementedError("attention masks are not supported (no jaxssl ViT uses one)")
  if jax.default_backend() == "cpu" and not _XLA_EVERYWHERE[0]:
    return looped_attention(query, key, value)
  return jax.nn.dot_product_attention(query, key, value)


def _group_size(batch):
  """Examples per loop step: one per device, so that a batch sharded over the devices is looped
  over an axis that is not sharded (each step then holds one example on every device)."""
  devices = jax.device_count()
  return devices if batch % devices == 0 else batch


def _scores(q, k):
  """(G, heads, T, S) float32 scaled scores q k^T / sqrt(head_dim) of heads-major inputs."""
  scores = jnp.matmul(q, _t(k), preferred_element_type=jnp.float32)
  return scores / math.sqrt(q.shape[-1])


def _heads_major(*xs):
  return [jnp.swapaxes(x, 1, 2) for x in xs]  # (B, T, heads, D) <-> (B, heads, T, D)


def _t(x):
  return jnp.swapaxes(x, -1, -2)


def _loop(fn, *xs):
  """fn over groups of examples: (B, ...) arrays -> (B // G steps, G, ...) -> fn -> (B, ...)."""
  b = xs[0].shape[0]
  g = _group_size(b)
  # Row i goes to (i // (B // G), i % (B // G)): with G devices the leading axis is the device
  # that holds the row, and the loop runs over the rows within each device's share.
  split = [jnp.swapaxes(x.reshape((g, b // g) + x.shape[1:]), 0, 1) for x in xs]
  out = jax.lax.map(lambda args: fn(*args), tuple(split))
  merge = lambda y: jnp.swapaxes(y, 0, 1).reshape((b,) + y.shape[2:])  # noqa: E731
  return jax.tree.map(merge, out)


def _forward_group(qh, kh, vh):
  """Output (G, heads, T, D) and the softmax's statistics: each row's max score and the inverse
  of its sum of exp(score - max), (G, heads, T, 2) float32."""
  scores = _scores(qh, kh)
  top = jnp.max(scores, axis=-1, keepdims=True)
  e = jnp.exp(scores - top)
  inverse_total = 1 / jnp.sum(e, axis=-1, keepdims=True)
  out = jnp.matmul((e * inverse_total).astype(vh.dtype), vh)
  return out, jnp.concatenate([top, inverse_total], -1)


@jax.custom_vjp
def looped_attention(query, key, value):
  """`dot_product_attention` a group of examples at a time, probabilities recomputed in the
  backward pass."""
  return _fwd(query, key, value)[0]


def _fwd(query, key, value):
  # Heads-major once for the whole batch (one pass each), not per loop step, where each
  # transpose is a strided gather out of the stacked inputs.
  qh, kh, vh = _heads_major(query, key, value)
  out, softmax_stats = _loop(_forward_group, qh, kh, vh)
  return _heads_major(out)[0], (qh, kh, vh, out, softmax_stats)


def _backward_group(qh, kh, vh, d_out, softmax_stats, delta):
  """FlashAttention-2's backward pass: the forward's row statistics give P with no max or sum
  over the keys, and softmax's sum_j dP_ij P_ij is `delta` = sum_d dO_id O_id (computed once,
  outside). Subtracting the max before exp, as the forward did, keeps P exact for large scores
  (exp(S - log-sum-exp) loses ~10x more precision)."""
  p = jnp.exp(_scores(qh, kh) - softmax_stats[..., :1]) * softmax_stats[..., 1:]
  # The barriers make P and dS tensors that each matmul reads, where XLA would otherwise fuse
  # their elementwise recipes into each consumer: one such fusion recomputed dS while writing
  # its (T, T) transpose, a strided scatter that cost more than the matmul it fed.
  p = jax.lax.optimization_barrier(p)
  # dV = P^T dO and dK = dS^T Q as (dO^T P)^T and (Q^T dS)^T: the transposes fall on the
  # (T, D) operands, not on the (T, T) matrices.
  d_v = _t(jnp.matmul(_t(d_out), p.astype(vh.dtype)))
  d_p = jnp.matmul(d_out, _t(vh), preferred_element_type=jnp.float32)
  d_s = jax.lax.optimization_barrier(
      (p * (d_p - delta) / math.sqrt(qh.shape[-1])).astype(qh.dtype))
  d_q = jnp.matmul(d_s, kh)
  d_k = _t(jnp.matmul(_t(qh), d_s))
  return d_q, d_k, d_v


def _bwd(residuals, d_out):
  qh, kh, vh, out, softmax_stats = residuals
  d_out = _heads_major(d_out)[0]
  delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1,
                  keepdims=True)  # (B, heads, T, 1)
  return tuple(_heads_major(*_loop(_backward_group, qh, kh, vh, d_out, softmax_stats, delta)))


looped_attention.defvjp(_fwd, _bwd)


class _Projection(nn.Module):
  """A kernel of shape in_shape + out_shape and a bias of shape out_shape, stored as flax's
  `nn.DenseGeneral` stores them (Xavier-uniform over the flattened (in, out) kernel, zero bias),
  applied as one (N, in) x (in, out) matmul: flax's dot_general over the unflattened kernel ran
  the MAE decoder's projections at about half the matmul peak on CPU."""
  in_shape: tuple[int, ...]
  out_shape: tuple[int, ...]
  kernel_axes: tuple[str, ...]
  bias_axes: tuple[str, ...]
  dtype: Any

  @nn.compact
  def __call__(self, x):
    n_in, n_out = math.prod(self.in_shape), math.prod(self.out_shape)

    def kernel_init(rng, shape, dtype):
      return nn.initializers.xavier_uniform()(rng, (n_in, n_out), dtype).reshape(shape)

    kernel = self.param("kernel", nn.with_logical_partitioning(kernel_init, self.kernel_axes),
                        self.in_shape + self.out_shape, jnp.float32)
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, self.bias_axes),
                      self.out_shape, jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel.reshape(n_in, n_out), bias.reshape(n_out),
                                              dtype=self.dtype)
    return x @ kernel + bias


class SelfAttention(nn.Module):
  """Multi-head self-attention over (B, T, width) tokens: `nn.MultiHeadDotProductAttention(
  num_heads, xavier_uniform kernels, zero biases)(x, x)` with `dot_product_attention` and the
  parameters query, key, value {kernel (width, heads, head_dim), bias (heads, head_dim)} and
  out {kernel (heads, head_dim, width), bias (width,)}, logical axes embed/heads/kv, so
  checkpoints and sharding rules are the same. Measured on the 2-core CPU, MAE's decoder block
  (batch 16, 197 tokens, width 512): the four projections' forward + backward 152 -> 132 ms
  (PyTorch's Linear layers: 130 ms); the MAE ViT-Tiny step 5.41-5.63 -> 5.22-5.27 s."""
  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, t, width = x.shape
    if width % self.num_heads:
      raise ValueError(f"width {width} is not divisible by num_heads={self.num_heads}")
    heads = (self.num_heads, width // self.num_heads)
    tokens = x.reshape(b * t, width)

    def project(name):
      out = _Projection((width,), heads, ("embed", "heads", "kv"), ("heads", "kv"), self.dtype,
                        name=name)(tokens)
      return out.reshape((b, t) + heads)

    y = dot_product_attention(project("query"), project("key"), project("value"))
    out = _Projection(heads, (width,), ("heads", "kv", "embed"), ("embed",), self.dtype,
                      name="out")(y.reshape(b * t, width))
    return out.reshape(b, t, width)
