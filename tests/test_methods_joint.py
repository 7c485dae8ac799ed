"""Method-specific logic of DINO and SwAV (the losses themselves are tested in test_losses.py)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

from configs import swav as swav_config
from jaxssl import methods, sharding
from jaxssl.methods import _multicrop, dino, swav
from jaxssl.models import heads


def _softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def test_dino_teacher_temperature_warms_up_linearly_then_stays():
  args = ml_collections.ConfigDict(dict(warmup_teacher_temp=0.04, teacher_temp=0.07,
                                        teacher_temp_warmup_steps=30))
  temps = [float(dino.teacher_temperature(s, args)) for s in (0, 15, 30, 31, 1000)]
  np.testing.assert_allclose(temps, [0.04, 0.055, 0.07, 0.07, 0.07], rtol=1e-6)
  args.teacher_temp_warmup_steps = 0  # no warm-up: the final temperature from step 0
  np.testing.assert_allclose(float(dino.teacher_temperature(0, args)), 0.07, rtol=1e-6)


def test_dino_center_is_an_ema_of_the_global_batch_mean_whatever_the_sharding():
  rng = np.random.default_rng(0)
  center = rng.normal(size=(16,)).astype(np.float32)
  logits = rng.normal(size=(32, 16)).astype(np.float32)
  expected = 0.9 * center + 0.1 * logits.mean(axis=0)
  np.testing.assert_allclose(dino.update_center(center, logits, 0.9), expected,
                             rtol=1e-5, atol=1e-6)
  mesh = sharding.make_mesh(sharding.PRESETS["dp"])  # 8 devices, each holding 4 rows
  sharded = jax.device_put(logits, sharding.batch_sharding(mesh, 2))
  with jax.set_mesh(mesh):
    out = jax.jit(dino.update_center, static_argnums=2)(center, sharded, 0.9)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_multicrop_pairs_every_global_crop_with_every_other_crop():
  pairs = _multicrop.crop_pairs(2, 6)  # 2 global + 4 local crops
  assert len(pairs) == 2 * 6 - 2 and all(i != j for i, j in pairs)
  assert sorted(pairs) == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5),
                           (1, 0), (1, 2), (1, 3), (1, 4), (1, 5)]


def test_dino_multicrop_loss_matches_the_reference_loop():
  rng = np.random.default_rng(1)
  student = [rng.normal(size=(4, 8)).astype(np.float32) for _ in range(5)]
  teacher = [rng.normal(size=(4, 8)).astype(np.float32) for _ in range(2)]
  center = rng.normal(size=(8,)).astype(np.float32)
  # DINOLoss.forward of the reference code, in numpy.
  total, n_terms = 0.0, 0
  for iq, t in enumerate(teacher):
    q = _softmax((t - center) / 0.04)
    for v, s in enumerate(student):
      if v == iq:
        continue
      log_p = np.log(_softmax(s / 0.1))
      total += np.mean(np.sum(-q * log_p, axis=-1))
      n_terms += 1
  assert n_terms == 8
  np.testing.assert_allclose(dino.multicrop_loss(student, teacher, center, 0.1, 0.04),
                             total / n_terms, rtol=1e-5)


def test_dino_head_last_layer_is_weight_normalised():
  head = dino.DINOHead(hidden_dim=16, bottleneck_dim=8, out_dim=12)
  x = np.random.default_rng(2).normal(size=(5, 6)).astype(np.float32)
  params = nn.unbox(head.init(jax.random.key(0), x, train=True))["params"]
  out = head.apply({"params": params}, x, train=True)
  # Cosines of a unit bottleneck vector with unit weight columns; rescaled columns change nothing.
  assert out.shape == (5, 12) and float(jnp.max(jnp.abs(out))) <= 1.0 + 1e-6
  scaled = dict(params, last_layer=params["last_layer"] * jnp.arange(1.0, 13.0))
  np.testing.assert_allclose(head.apply({"params": scaled}, x, train=True), out,
                             rtol=1e-5, atol=1e-6)


def test_swav_scores_are_cosines_with_the_normalised_prototypes():
  head = swav.SwAVHead(hidden_dim=16, proj_dim=8, num_prototypes=10)
  x = np.random.default_rng(3).normal(size=(6, 5)).astype(np.float32)
  variables = nn.unbox(head.init(jax.random.key(0), x, train=False))
  scores = head.apply(variables, x, train=False)
  z = heads.MLPHead(hidden_dim=16, out_dim=8).apply(
      {k: v["mlp"] for k, v in variables.items()}, x, train=False)
  protos = np.asarray(variables["params"]["prototypes"])
  unit = lambda a, axis: a / np.linalg.norm(a, axis=axis, keepdims=True)
  cosines = unit(np.asarray(z), 1) @ unit(protos, 0)
  np.testing.assert_allclose(scores, cosines, rtol=1e-5, atol=1e-6)
  params = dict(variables["params"], prototypes=protos * np.arange(1.0, 11.0, dtype=np.float32))
  np.testing.assert_allclose(head.apply({**variables, "params": params}, x, train=False), scores,
                             rtol=1e-5, atol=1e-6)


def test_swav_swapped_prediction_averages_over_pairs_as_the_reference_code():
  rng = np.random.default_rng(4)
  scores = [rng.uniform(-1, 1, size=(8, 4)).astype(np.float32) for _ in range(4)]
  loss, codes = swav.swapped_prediction_loss(scores, 2, epsilon=0.05, iterations=3, temperature=0.1)
  assert len(codes) == 2
  np.testing.assert_allclose(np.sum(codes[0], axis=1), 1.0, rtol=1e-5)
  # The reference loop: for each global crop, mean over the other crops, then mean over the two.
  expected = 0.0
  for i in range(2):
    subloss = sum(np.mean(-np.sum(np.asarray(codes[i]) * np.log(_softmax(s / 0.1)), axis=1))
                  for v, s in enumerate(scores) if v != i)
    expected += subloss / (len(scores) - 1)
  np.testing.assert_allclose(loss, expected / 2, rtol=1e-5)


def test_swav_prototypes_get_no_gradient_while_frozen():
  config = swav_config.get_config("quick")
  config.batch_size, config.augment.num_local = 16, 0  # keeps the compilation short
  method = methods.build(config, methods.DataInfo(image_size=16, num_classes=10))
  variables = nn.unbox(method.init(jax.random.key(0)))
  params = variables.pop("params")
  rng = np.random.default_rng(5)
  batch = {"image": rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8),
           "label": rng.integers(0, 10, (16,), dtype=np.int32)}
  loss = lambda p, step: method.loss(p, variables, batch, jax.random.key(1), step)[0]
  grad_fn = jax.jit(jax.grad(loss))
  frozen, free = (grad_fn(params, s)["projector"] for s in (0, config.swav.freeze_prototypes_steps))
  assert float(jnp.abs(frozen["prototypes"]).max()) == 0.0
  assert float(jnp.abs(frozen["mlp"]["dense0"]["kernel"]).max()) > 0.0
  assert float(jnp.abs(free["prototypes"]).max()) > 0.0
