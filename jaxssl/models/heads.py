"""Projection/prediction heads and the linear classifier used by online probes."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


def _dense(features: int, names: tuple[str, str], use_bias: bool, dtype: Any,
           name: str) -> nn.Dense:
  return nn.Dense(
      features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=nn.with_logical_partitioning(
          nn.initializers.lecun_normal(), names),
      bias_init=nn.with_logical_partitioning(
          nn.initializers.zeros, names[-1:]),
      name=name)


def _batch_norm(train: bool, affine: bool, dtype: Any,
                name: str) -> nn.BatchNorm:
  # As in the ResNet, statistics cover the global batch under jit with no
  # axis_name (there is no named pmap/shard_map axis to reduce over).
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5,
      use_scale=affine, use_bias=affine, dtype=dtype, param_dtype=jnp.float32,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
      name=name)


class MLPHead(nn.Module):
  """(Dense -> BN -> ReLU) x (num_layers - 1) -> Dense [-> BN without affine].

  Covers the SimCLR/BYOL projectors and the BYOL/SimSiam/MoCo v3 predictors.

  Attributes:
    hidden_dim: width of the hidden layers.
    out_dim: output width.
    num_layers: number of Dense layers (>= 1).
    use_bn: BatchNorm after each hidden Dense. Those Dense layers then have no
      bias, since BN's shift makes it redundant.
    last_bn: BatchNorm without scale/shift on the output, as SimCLR v2 and
      MoCo v3 put on their projectors.
    dtype: compute dtype; parameters and BN statistics stay float32.
  """
  hidden_dim: int
  out_dim: int
  num_layers: int = 2
  use_bn: bool = True
  last_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    # Hidden layers are named like an MLP's way out and the last one like its
    # way back, so that no kernel carries the same logical name twice.
    for i in range(self.num_layers - 1):
      x = _dense(self.hidden_dim, ("embed", "mlp"), not self.use_bn, self.dtype,
                 f"dense{i}")(x)
      if self.use_bn:
        x = _batch_norm(train, True, self.dtype, f"bn{i}")(x)
      x = nn.relu(x)
    last = self.num_layers - 1
    names = ("mlp", "embed") if last else ("embed", "mlp")
    x = _dense(self.out_dim, names, not self.last_bn, self.dtype,
               f"dense{last}")(x)
    if self.last_bn:
      x = _batch_norm(train, False, self.dtype, f"bn{last}")(x)
    return x


class LinearClassifier(nn.Module):
  """A single Dense layer, zero-initialised so a probe starts at chance level.

  Online probes should receive `jax.lax.stop_gradient`-ed features; that is the
  caller's job, so the probe can also be used for fine-tuning.
  """
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return nn.Dense(
        self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.zeros, ("embed", "mlp")),
        bias_init=nn.with_logical_partitioning(
            nn.initializers.zeros, ("mlp",)),
        name="head")(x)
