"""Mesh resolution and the invariant that sharding does not change the numbers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import glob
import importlib
import os

import flax.linen as nn

from jaxssl import methods, models, sharding
from sharded_loss import loss_metrics_grads


def _quick_config(name):
  return importlib.import_module(f"configs.{name}").get_config("quick")


# Every image-method config in configs/ (each has a ":quick" variant): the 8-device test covers
# them all. Video-audio-text configs have their own in test_methods_mm.py.
CONFIG_NAMES = sorted(
    name for name in (os.path.basename(p)[:-3] for p in glob.glob(
        os.path.join(os.path.dirname(__file__), "..", "configs", "*.py")))
    if _quick_config(name).dataset not in ("avshapes", "av_records"))


def test_mesh_shape_resolves_minus_one_and_rejects_mismatch():
  assert sharding.mesh_shape(dict(data=-1, fsdp=2, model=1), 8) == dict(data=4, fsdp=2, model=1)
  assert sharding.mesh_shape(sharding.PRESETS["fsdp+tp"], 8) == dict(data=1, fsdp=4, model=2)
  with pytest.raises(ValueError, match="needs 6 devices"):
    sharding.mesh_shape(dict(data=3, fsdp=2, model=1), 8)
  with pytest.raises(ValueError, match="at most one axis"):
    sharding.mesh_shape(dict(data=-1, fsdp=-1, model=1), 8)
  with pytest.raises(ValueError, match="not divisible"):
    sharding.mesh_shape(dict(data=-1, fsdp=3, model=1), 8)
  # config.mesh.preset names a shape; sizes given beside it are refused, not silently dropped.
  assert sharding.mesh_shape(dict(preset="fsdp", data=-1, fsdp=1, model=1), 8) == dict(
      data=1, fsdp=8, model=1)
  with pytest.raises(ValueError, match="preset 'fsdp' and sizes"):
    sharding.mesh_shape(dict(preset="fsdp", data=2, fsdp=1, model=1), 8)
  with pytest.raises(ValueError, match="unknown 'tp'; presets: dp, fsdp, fsdp\\+tp"):
    sharding.mesh_shape(dict(preset="tp", data=-1, fsdp=1, model=1), 8)


def test_logical_rules_replicate_indivisible_dims():
  mesh = sharding.make_mesh(sharding.PRESETS["fsdp+tp"])  # fsdp=4, model=2
  assert sharding.logical_to_mesh_spec(("embed", "mlp"), (64, 32), mesh) == P("fsdp", "model")
  assert sharding.logical_to_mesh_spec(("embed", "mlp"), (6, 32), mesh) == P(None, "model")
  assert sharding.logical_to_mesh_spec(("conv_h", "conv_w", "conv_in", "conv_out"), (3, 3, 8, 10),
                                       mesh) == P(None, None, None, None)


class _TinyEncoder(nn.Module):
  """Strided conv -> BatchNorm -> ReLU -> mean pool, partitioned like the ResNet's layers.

  What can differ between 1 and 8 devices is what crosses the batch (BatchNorm statistics, the
  loss's batch terms, queues, Sinkhorn, centers) and the split parameters; one conv with BatchNorm
  has both and compiles in a fraction of a ResNet's time (~50 s per method on 2 cores)."""

  @nn.compact
  def __call__(self, x, train):
    x = nn.Conv(16, (3, 3), strides=(2, 2), use_bias=False, kernel_init=nn.with_logical_partitioning(
        nn.initializers.lecun_normal(), ("conv_h", "conv_w", "conv_in", "conv_out")))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                     bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)))(x)
    return jnp.mean(nn.relu(x), axis=(1, 2))


@pytest.mark.parametrize("preset", ["dp", "fsdp", "fsdp+tp", "data2xfsdp4"])
@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_loss_and_grads_equal_on_8_devices_and_1(name, preset, monkeypatch):
  if preset != "fsdp" and name != "simclr":
    # The mesh layouts are covered once, with simclr; every other method runs on the FSDP mesh,
    # where both the batch and the params are split over all 8 devices.
    pytest.skip("mesh layouts are covered with simclr")
  if name == "mae":
    # MAE's masking and decoder work on the ViT's patches, so it keeps its ViT, cut to one block.
    build_vit = models.build_encoder
    monkeypatch.setattr(models, "build_encoder", lambda model_config: build_vit(
        model_config).clone(depth=1))
  elif (name, preset) != ("simclr", "fsdp+tp"):
    # The real encoder's sharding is covered by the simclr case on the richest mesh; the other
    # layouts and the methods' own machinery run around a tiny encoder.
    monkeypatch.setattr(models, "build_encoder", lambda model_config: _TinyEncoder())
  config = _quick_config(name)
  rng = np.random.default_rng(0)
  b, s = config.batch_size, config.data.image_size
  batch = {"image": rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8),
           "label": rng.integers(0, 10, (b,), dtype=np.int32),
           "index": np.arange(b, dtype=np.int32)}
  one = sharding.make_mesh(dict(data=1, fsdp=1, model=1), jax.devices()[:1])
  shape = dict(data=2, fsdp=4, model=1) if preset == "data2xfsdp4" else sharding.PRESETS[preset]
  eight = sharding.make_mesh(shape)
  data_info = methods.DataInfo(image_size=config.data.image_size, num_classes=10)
  loss1, _, grads1, _ = loss_metrics_grads(methods.build(config, data_info), config, one, batch)
  loss8, _, grads8, state_sh = loss_metrics_grads(methods.build(config, data_info), config, eight,
                                                  batch)
  # Same math, different reduction order across devices: float32 rounding only, which is
  # relative to a tensor's scale (a per-device reduction where a global one is due would be off
  # by O(1) of that scale).
  np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
  for g8, g1 in zip(jax.tree.leaves(grads8), jax.tree.leaves(grads1)):
    np.testing.assert_allclose(g8, g1, rtol=1e-3, atol=1e-4 * float(np.abs(g1).max()) + 1e-5)
  if preset != "dp":  # the params really are split, not silently replicated
    specs = [s.spec for s in jax.tree.leaves(state_sh["params"])]
    assert any(any(a is not None for a in spec) for spec in specs)
