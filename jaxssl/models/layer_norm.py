"""LayerNorm with a hand-written backward pass, a drop-in for flax's `nn.LayerNorm` in the ViTs.

Why: flax computes y = (x - mean) * (rsqrt(var + eps) * scale) + bias, whose factor in brackets
is a full (..., width) tensor. Autodiff keeps such tensors for the backward pass, and XLA's CPU
backend materialises them (a broadcast of `scale` and of `rsqrt` to the activation's shape per
call). This version keeps only the input (the residual stream, which is kept anyway) and two
float32 numbers per row (mean and 1/std), and recomputes the normalised input in the backward pass.
Measured on the 2-core CPU, MAE's decoder shape (16 x 197 x 512), forward + backward: 2.9 -> 2.0
ms; the MAE ViT-Tiny train step: -67 ms (median of 12 paired steps, of ~4 s).

Statistics and arithmetic are float32 whatever the input dtype (as flax's are); the output has
the module's `dtype`.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def layer_norm(x, scale, bias, epsilon, dtype):
  """(x - mean) / sqrt(var + epsilon) * scale + bias over the last axis, as `dtype`."""
  return _forward(x, scale, bias, epsilon, dtype)[0]


def _forward(x, scale, bias, epsilon, dtype):
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, -1, keepdims=True)
  inverse_std = jax.lax.rsqrt(jnp.mean(jnp.square(x32 - mean), -1, keepdims=True) + epsilon)
  y = (x32 - mean) * inverse_std * scale + bias
  return y.astype(dtype), (x, mean, inverse_std, scale)


def _backward(epsilon, dtype, residuals, d_y):
  """With x^ the normalised input and g = dy * scale (per row of width n):
  dx = (g - mean(g) - x^ mean(g x^)) / std, d_scale = sum over rows of dy x^, d_bias of dy."""
  del epsilon, dtype
  x, mean, inverse_std, scale = residuals
  d_y = d_y.astype(jnp.float32)
  normalised = (x.astype(jnp.float32) - mean) * inverse_std
  rows = tuple(range(x.ndim - 1))
  g = d_y * scale
  d_x = inverse_std * (g - jnp.mean(g, -1, keepdims=True)
                       - normalised * jnp.mean(g * normalised, -1, keepdims=True))
  return (d_x.astype(x.dtype), jnp.sum(d_y * normalised, rows).astype(scale.dtype),
          jnp.sum(d_y, rows).astype(scale.dtype))


layer_norm.defvjp(_forward, _backward)


class LayerNorm(nn.Module):
  """`nn.LayerNorm(epsilon, dtype, param_dtype=float32)` over the last axis with the same
  parameters: scale (ones) and bias (zeros) of shape (width,), logical axis "norm"."""
  epsilon: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                       (width,), jnp.float32)
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
                      (width,), jnp.float32)
    return layer_norm(x, scale, bias, self.epsilon, self.dtype)
