"""Tests for jaxssl.components (EMA, key queue, online probe), multi-crop views and the momentum
target shared by BYOL / MoCo."""
import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxssl import augment, methods, sharding
from jaxssl.components import ema, online_probe, queue
from jaxssl.methods import _common
from jaxssl.models import heads


# ---------------------------------------------------------------------------------------------
# EMA


def test_momentum_schedule_follows_the_cosine_formula_from_base_to_one():
  base, total = 0.996, 1000
  formula = lambda k: 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2
  for k, expected in ((0, base), (total // 2, (1 + base) / 2), (total, 1.0), (123, formula(123))):
    assert float(ema.momentum_schedule(k, total, base)) == pytest.approx(expected, abs=1e-7)
  # A traced step (as inside the jitted train step) gives the same values.
  traced = jax.jit(lambda k: ema.momentum_schedule(k, total, base))
  assert float(traced(jnp.int32(123))) == pytest.approx(formula(123), abs=1e-7)


def test_ema_update_mixes_every_leaf_in_float32():
  target = {"w": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(4.0)}}
  online = {"w": jnp.array([3.0, 6.0], jnp.bfloat16), "b": {"c": jnp.array(0.0)}}
  out = ema.ema_update(target, online, 0.75)
  np.testing.assert_allclose(out["w"], [1.5, 3.0])
  np.testing.assert_allclose(out["b"]["c"], 3.0)
  assert out["w"].dtype == jnp.float32


# ---------------------------------------------------------------------------------------------
# Queue


def test_init_queue_has_random_unit_rows_and_pointer_zero():
  q = queue.init_queue(jax.random.key(0), 16, 8)
  assert q["keys"].shape == (16, 8) and q["keys"].dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(q["keys"], axis=1), 1.0, rtol=1e-5)
  assert int(q["ptr"]) == 0 and q["ptr"].dtype == jnp.int32


def test_enqueue_keeps_the_last_k_keys_in_fifo_order_across_the_wrap():
  size, batch, dim = 8, 2, 3
  q = queue.init_queue(jax.random.key(0), size, dim)
  step = jax.jit(queue.enqueue)
  batches = [(np.full((batch, dim), i) + np.arange(batch)[:, None] / 10).astype(np.float32)
             for i in range(7)]
  for keys in batches:
    q = step(q, keys)
  ptr = int(q["ptr"])
  assert ptr == (7 * batch) % size
  # Oldest first: rows from the pointer to the end, then from the start to the pointer.
  fifo = np.concatenate([q["keys"][ptr:], q["keys"][:ptr]])
  np.testing.assert_array_equal(fifo, np.concatenate(batches)[-size:])


def test_enqueue_of_a_sharded_batch_matches_the_unsharded_result():
  mesh = sharding.make_mesh(dict(data=-1, fsdp=1, model=1))  # 8 devices
  q = queue.init_queue(jax.random.key(0), 32, 4)
  keys = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
  sharded = jax.device_put(keys, sharding.batch_sharding(mesh, 2))
  out = jax.jit(queue.enqueue, out_shardings=sharding.replicated(mesh))(q, sharded)
  np.testing.assert_array_equal(out["keys"][:16], keys)
  np.testing.assert_array_equal(out["keys"][16:], q["keys"][16:])


def test_queue_size_must_be_a_multiple_of_the_batch():
  with pytest.raises(ValueError, match="multiple of the global batch size 3"):
    queue.enqueue(queue.init_queue(jax.random.key(0), 8, 4), jnp.zeros((3, 4)))
  # MoCo v2 checks it when the method is built, before anything is compiled.
  config = importlib.import_module("configs.moco_v2").get_config("quick")
  config.moco_v2.queue_size = config.batch_size * 4 + 1
  with pytest.raises(ValueError, match="queue size"):
    methods.build(config, methods.DataInfo(image_size=16, num_classes=10))


# ---------------------------------------------------------------------------------------------
# Online probe


def test_online_probe_trains_its_own_weights_but_never_the_features():
  probe = online_probe.OnlineProbe(num_classes=3)
  features = jax.random.normal(jax.random.key(0), (6, 5))
  labels = jnp.array([0, 1, 2, 0, 1, 2])
  variables = probe.init(jax.random.key(1), features)

  def loss(params, features):
    return online_probe.probe_loss(probe.apply({"params": params}, features), labels)

  (value, metrics), (g_params, g_features) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
      variables["params"], features)
  assert float(value) == pytest.approx(math.log(3), rel=1e-6)  # zero-initialised: chance level
  assert 0.0 <= float(metrics["probe_acc"]) <= 1.0
  np.testing.assert_array_equal(g_features, 0.0)
  assert float(jnp.abs(nn.unbox(g_params)["linear"]["head"]["kernel"]).sum()) > 0


# ---------------------------------------------------------------------------------------------
# Multi-crop


def test_multicrop_views_shapes_and_independent_views():
  images = np.random.RandomState(0).randint(0, 256, (4, 20, 20, 3)).astype(np.uint8)
  cfg = augment.default_view_config()
  local_cfg = augment.default_view_config()
  local_cfg.crop_scale = (0.05, 0.4)
  global_views, local_views = jax.jit(lambda rng, x: augment.multicrop_views(
      rng, x, global_size=16, local_size=8, global_cfgs=[cfg, cfg], local_cfg=local_cfg,
      num_local=3))(jax.random.key(0), images)
  assert [v.shape for v in global_views] == [(4, 16, 16, 3)] * 2
  assert [v.shape for v in local_views] == [(4, 8, 8, 3)] * 3
  for views in (global_views, local_views):
    for v in views:
      assert v.dtype == jnp.float32 and 0.0 <= float(v.min()) and float(v.max()) <= 1.0
    for i in range(len(views)):
      for j in range(i):
        assert not np.allclose(views[i], views[j])


# ---------------------------------------------------------------------------------------------
# Momentum target (BYOL, MoCo v2/v3)


class _TinyEncoder(nn.Module):

  @nn.compact
  def __call__(self, x, train):
    return nn.relu(nn.Dense(6)(x.reshape(len(x), -1)))


def test_momentum_target_updates_before_its_forward_pass_and_passes_no_gradient():
  net = _common.SiameseNet(encoder=_TinyEncoder(), projector=heads.MLPHead(hidden_dim=8, out_dim=4),
                           predictor=heads.MLPHead(hidden_dim=8, out_dim=4), num_classes=3)
  variables = nn.unbox(_common.init(net, jax.random.key(0), image_size=2))
  target = _common.target_init(variables)
  assert sorted(target["params"]) == ["encoder", "projector"]
  assert jax.tree.all(jax.tree.map(jnp.array_equal, target["params"],
                                   {k: variables["params"][k] for k in target["params"]}))
  params = jax.tree.map(lambda p: p + 1.0, variables["params"])  # the online net has moved on
  views = [jax.random.normal(jax.random.key(i), (5, 2, 2, 3)) for i in range(2)]
  tau = 0.9

  (z1, _), new = _common.momentum_target(net, target, params, views, tau)
  expected = jax.tree.map(lambda t, o: tau * t + (1 - tau) * o, target["params"],
                          {k: params[k] for k in target["params"]})
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new["params"], expected)
  # The keys come from the updated target, in train mode (batch statistics).
  (_, z_ref, _), _ = net.apply({"params": expected, "batch_stats": target["batch_stats"]}, views[0],
                               train=True, predict=False, mutable=["batch_stats"])
  np.testing.assert_allclose(z1, z_ref, rtol=1e-5, atol=1e-6)
  # Its running statistics moved (one update per view); the online params get no gradient.
  assert not jax.tree.all(jax.tree.map(jnp.array_equal, new["batch_stats"], target["batch_stats"]))
  keys_sum = lambda p: jnp.sum(_common.momentum_target(net, target, p, views, tau)[0][0])
  grads = jax.grad(keys_sum)(params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))
