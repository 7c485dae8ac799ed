"""Tests for jaxssl.models: shapes, dtypes, sharding annotations, BN, param counts.

Shapes, dtypes and parameter counts come from `jax.eval_shape`, which costs no
compilation; only a few tiny models are actually run.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl import models
from jaxssl.models import LinearClassifier, MLPHead, ResNet, ViT, attention, layer_norm

# Logical axis names the sharding rules know about (see models' contract).
LOGICAL_NAMES = {"embed", "mlp", "heads", "kv", "conv_t", "conv_h", "conv_w",
                 "conv_in", "conv_out", "norm", None}


def _init(module, x, **kwargs):
  # Init under jit with an RBG key: XLA:CPU compiles threefry-based random
  # initialisers very slowly (tens of seconds for a ResNet), RBG in seconds.
  init = lambda x: module.init(jax.random.key(0, impl="unsafe_rbg"), x, **kwargs)
  return nn.meta.unbox(jax.jit(init)(x))


def _abstract(module, x, **kwargs):
  """(boxed variables, output) shapes, traced without compiling or running."""
  variables = jax.eval_shape(
      lambda x: module.init(jax.random.key(0), x, **kwargs), x)
  out = jax.eval_shape(lambda v, x: module.apply(v, x, **kwargs),
                       variables, x)
  return variables, out


def _num_params(module, shape):
  variables, _ = _abstract(module, jnp.zeros(shape), train=False)
  params = nn.meta.unbox(variables["params"])
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def _images(b, size, seed=0):
  return np.random.RandomState(seed).normal(size=(b, size, size, 3)).astype(
      np.float32)


@pytest.mark.parametrize("depth,stem,size,dim", [
    (10, "cifar", 16, 64),
    (18, "imagenet", 32, 64),
    (50, "cifar", 16, 256),
    (50, "imagenet", 32, 256),
])
def test_resnet_output_shape(depth, stem, size, dim):
  config = ml_collections.ConfigDict(
      dict(name="resnet", depth=depth, width=8, stem=stem))
  _, out = _abstract(models.build_encoder(config), _images(2, size),
                     train=False)
  assert out.shape == (2, dim)
  assert models.feature_dim(config) == dim


@pytest.mark.parametrize("variant,pool", [
    ("mu/4", "cls"), ("mu/4", "gap"), ("tiny/4", "cls"), ("tiny/4", "gap")])
def test_vit_output_shape(variant, pool):
  config = ml_collections.ConfigDict(dict(name="vit", variant=variant, pool=pool))
  width = models.feature_dim(config)
  _, (pooled, tokens) = _abstract(models.build_encoder(config), _images(2, 16),
                                  train=False, return_tokens=True)
  assert pooled.shape == (2, width)
  assert tokens.shape == (2, 16 + (pool == "cls"), width)


# A one-block ViT, quick to compile on a CPU.
_TINY_VIT = dict(patch_size=4, width=32, depth=1, num_heads=2)


@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_vit_pooling_and_ids_keep(pool):
  model = ViT(**_TINY_VIT, pool=pool)
  x = _images(2, 8)
  variables = _init(model, x, train=False)
  apply = jax.jit(functools.partial(model.apply, train=False,
                                    return_tokens=True))
  pooled, tokens = apply(variables, x)
  expected = tokens[:, 0] if pool == "cls" else tokens.mean(axis=1)
  np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
  if pool == "cls":
    # Keeping every patch in order is the same as passing no ids_keep.
    _, kept = apply(variables, x, ids_keep=np.tile(np.arange(4), (2, 1)))
    np.testing.assert_allclose(tokens, kept, rtol=1e-5, atol=1e-5)
  # Keeping K patches encodes K tokens (+ cls).
  _, (_, kept) = _abstract(model, x, train=False, return_tokens=True,
                           ids_keep=np.array([[0, 3], [2, 1]]))
  assert kept.shape == (2, 2 + (pool == "cls"), 32)


def test_vit_config_parsing():
  assert models.vit_config("tiny/4") == dict(
      width=192, depth=12, num_heads=3, patch_size=4)
  assert models.vit_config("base")["patch_size"] == 16
  # One config may hold both encoders' fields; the ResNet's depth and width
  # must not resize the ViT.
  config = ml_collections.ConfigDict(dict(
      name="vit", variant="small/8", dtype="bfloat16", depth=18, width=16,
      stem="cifar", pool="gap"))
  model = models.build_encoder(config)
  assert (model.width, model.depth, model.patch_size) == (384, 12, 8)
  assert (model.pool, model.dtype) == ("gap", jnp.bfloat16)
  assert models.feature_dim(config) == 384
  config.name = "resnet"
  assert models.feature_dim(config) == 128


def test_vit_remat_keeps_params_and_differentiates():
  # Remat must not rename parameters (checkpoints stay interchangeable), and
  # `deterministic` must stay static under the remat transform.
  x = _images(2, 8)
  plain, remat = ViT(**_TINY_VIT), ViT(**_TINY_VIT, remat=True)
  variables = nn.meta.unbox(_abstract(plain, x, train=False)[0])
  remat_variables = nn.meta.unbox(_abstract(remat, x, train=False)[0])
  assert jax.tree.structure(variables) == jax.tree.structure(remat_variables)
  grads = jax.eval_shape(
      jax.grad(lambda v: remat.apply(v, x, train=True).sum()), variables)
  assert jax.tree.structure(grads) == jax.tree.structure(variables)


@pytest.mark.parametrize("remat", [False, True])
def test_vit_scan_layers_computes_the_unrolled_stack(remat):
  """The scanned encoder with block i's parameters at index i of the stacked ones gives the
  unrolled encoder's output and gradients; its stacked axis is named "layers" (replicated)."""
  x = _images(2, 8)
  kwargs = dict(_TINY_VIT, depth=3, remat=remat)
  unrolled, scanned = ViT(**kwargs), ViT(**kwargs, scan_layers=True)
  variables = unrolled.init(jax.random.key(0), x, train=False)
  params = nn.meta.unbox(variables)["params"]
  blocks = [params["encoder"].pop(f"block{i}") for i in range(3)]
  stacked = dict(params, encoder=dict(params["encoder"], blocks=dict(
      block=jax.tree.map(lambda *a: jnp.stack(a), *blocks))))
  boxed = _abstract(scanned, x, train=False)[0]["params"]
  assert jax.tree.structure(nn.meta.unbox(boxed)) == jax.tree.structure(stacked)
  kernel = boxed["encoder"]["blocks"]["block"]["mlp"]["fc1"]["kernel"]
  assert kernel.names == ("layers", "embed", "mlp") and kernel.value.shape == (3, 32, 128)

  def loss(module, p):
    return jnp.sum(module.apply({"params": p}, x, train=False) ** 2)

  out_u = unrolled.apply({"params": nn.meta.unbox(variables)["params"]}, x, train=False)
  out_s = scanned.apply({"params": stacked}, x, train=False)
  np.testing.assert_allclose(out_s, out_u, rtol=1e-5, atol=1e-6)
  grad_u = jax.grad(functools.partial(loss, unrolled))(nn.meta.unbox(variables)["params"])
  grad_s = jax.grad(functools.partial(loss, scanned))(stacked)
  # Tolerance on the gradients' overall scale: some are zero up to rounding (key biases).
  atol = 1e-5 * max(float(np.abs(g).max()) for g in jax.tree.leaves(grad_u))
  for i in range(3):
    for a, b in zip(jax.tree.leaves(grad_u["encoder"][f"block{i}"]),
                    jax.tree.leaves(grad_s["encoder"]["blocks"]["block"])):
      np.testing.assert_allclose(b[i], a, rtol=1e-4, atol=atol)


_SMALL_MODELS = {
    "resnet10": (ResNet(depth=10, width=8), dict(train=False)),
    "resnet50": (ResNet(depth=50, width=8, stem="imagenet"), dict(train=False)),
    "vit_cls": (ViT(**models.vit_config("mu/4"), posemb="learn"),
                dict(train=False)),
    "vit_gap": (ViT(**models.vit_config("mu/4"), pool="gap"),
                dict(train=False)),
    "mlp_head": (MLPHead(hidden_dim=32, out_dim=16, num_layers=3,
                         last_bn=True), dict(train=False)),
    "linear": (LinearClassifier(num_classes=10), dict()),
}


def _input_for(name):
  return np.ones((2, 8), np.float32) if name in ("mlp_head", "linear") else (
      _images(2, 16))


@pytest.mark.parametrize("name", sorted(_SMALL_MODELS))
def test_bfloat16_compute_keeps_float32_params(name):
  module, kwargs = _SMALL_MODELS[name]
  x = _input_for(name)
  variables, out = _abstract(module.clone(dtype=jnp.bfloat16), x, **kwargs)
  for leaf in jax.tree.leaves(nn.meta.unbox(variables)):
    assert leaf.dtype == jnp.float32
  assert out.dtype == jnp.bfloat16
  assert _abstract(module, x, **kwargs)[1].dtype == jnp.float32


@pytest.mark.parametrize("name", sorted(_SMALL_MODELS))
def test_every_param_has_logical_axes(name):
  module, kwargs = _SMALL_MODELS[name]
  boxed = _abstract(module, _input_for(name), **kwargs)[0]["params"]
  is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)
  leaves = jax.tree.leaves(boxed, is_leaf=is_box)
  assert leaves and all(is_box(leaf) for leaf in leaves)
  specs = jax.tree.leaves(nn.get_partition_spec(boxed),
                          is_leaf=lambda x: isinstance(x, jax.P))
  assert len(specs) == len(leaves)
  for spec, leaf in zip(specs, leaves):
    assert isinstance(spec, jax.P)
    assert len(spec) == leaf.value.ndim, (spec, leaf.value.shape)
    assert set(spec) <= LOGICAL_NAMES, spec
    named = [n for n in spec if n is not None]
    assert len(named) == len(set(named)), f"repeated logical name in {spec}"


def test_resnet_batchnorm_train_and_eval():
  model = ResNet(depth=10, width=4)
  x = _images(4, 16)
  variables = _init(model, x, train=False)
  # Zero-initialised last BN scale: each residual branch starts at zero.
  assert not np.any(variables["params"]["stage1_block1"]["bn2"]["scale"])
  train = jax.jit(functools.partial(model.apply, train=True,
                                    mutable=["batch_stats"]))
  evaluate = jax.jit(functools.partial(model.apply, train=False))
  _, updates = train(variables, x)
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)),
                         variables["batch_stats"], updates["batch_stats"])
  assert all(jax.tree.leaves(changed))
  variables = {"params": variables["params"], **updates}

  # Same first example, different rest of the batch. Eval mode normalises with
  # running statistics, so that example's features do not change; in train
  # mode (batch statistics) they do.
  batch_a, batch_b = x.copy(), x.copy()
  batch_b[1:] = -3 * _images(3, 16, seed=1)
  np.testing.assert_allclose(evaluate(variables, batch_a)[0],
                             evaluate(variables, batch_b)[0],
                             rtol=1e-5, atol=1e-6)
  assert not np.allclose(train(variables, batch_a)[0][0],
                         train(variables, batch_b)[0][0], atol=1e-4)


def test_mlp_head_layout():
  x = np.ones((4, 8), np.float32)
  head = MLPHead(hidden_dim=32, out_dim=16, num_layers=3, last_bn=True)
  variables, out = _abstract(head, x, train=False)
  assert out.shape == (4, 16)
  params = nn.meta.unbox(variables["params"])
  assert set(params) == {"dense0", "bn0", "dense1", "bn1", "dense2"}
  # Bias only where no BN follows; the output BN has no affine parameters but
  # does keep running statistics.
  assert "bias" not in params["dense0"] and "bias" not in params["dense2"]
  assert "bn2" in variables["batch_stats"]
  variables, _ = _abstract(MLPHead(hidden_dim=32, out_dim=16, use_bn=False),
                           x, train=True)
  assert "batch_stats" not in variables
  assert "bias" in variables["params"]["dense0"]


def test_resnet_param_counts_match_torchvision():
  # torchvision totals minus the 1000-way fc (in_features * 1000 + 1000).
  assert _num_params(ResNet(18, stem="imagenet"), (1, 224, 224, 3)) == (
      11_689_512 - (512 * 1000 + 1000))
  assert _num_params(ResNet(50, stem="imagenet"), (1, 224, 224, 3)) == (
      25_557_032 - (2048 * 1000 + 1000))


def test_vit_base_param_count():
  width, mlp, patches = 768, 3072, 14 * 14
  embed = 16 * 16 * 3 * width + width
  block = (2 * 2 * width                      # two LayerNorms
           + 4 * (width * width + width)      # q, k, v, out projections
           + width * mlp + mlp + mlp * width + width)
  expected = embed + 12 * block + 2 * width + width  # + final LN, cls token
  assert expected == 85_647_360
  vit_b16 = ViT(**models.vit_config("base"))
  assert _num_params(vit_b16, (1, 224, 224, 3)) == expected
  # A learned posemb adds one vector per patch. timm's 86,567,656 also counts a
  # cls-token position (768) and the 1000-way head (769,000).
  learned = vit_b16.clone(posemb="learn")
  assert _num_params(learned, (1, 224, 224, 3)) == expected + patches * width
  assert expected + patches * width + width == 86_567_656 - 769_000


def test_posemb_sincos_2d_matches_reference():
  h, w, width, temperature = 3, 5, 16, 10_000.
  pe = np.asarray(models.posemb_sincos_2d(h, w, width, temperature))
  assert pe.shape == (1, h * w, width) and pe.dtype == np.float32
  assert np.all(np.abs(pe) <= 1.)
  quarter = width // 4
  reference = np.zeros((h * w, width))
  for i in range(h):
    for j in range(w):
      for k in range(quarter):
        omega = 1. / temperature**(k / quarter)
        reference[i * w + j, k] = np.sin(j * omega)
        reference[i * w + j, quarter + k] = np.cos(j * omega)
        reference[i * w + j, 2 * quarter + k] = np.sin(i * omega)
        reference[i * w + j, 3 * quarter + k] = np.cos(i * omega)
  np.testing.assert_allclose(pe[0], reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fields,match", [
    (dict(name="convnext"), "model.name"),
    (dict(name="resnet", dtype="float16"), "model.dtype"),
    (dict(name="resnet", widht=8), "widht"),
    (dict(name="resnet", depth=42), "depth"),
    (dict(name="resnet", stem="cifar10"), "stem"),
    (dict(name="vit", variant="huge/14"), "variant"),
    (dict(name="vit", variant="tiny/x"), "variant"),
    (dict(name="vit", pool="max"), "pool"),
    (dict(name="vit", posemb="rope"), "posemb"),
])
def test_build_encoder_rejects_bad_config(fields, match):
  with pytest.raises(ValueError, match=match):
    models.build_encoder(ml_collections.ConfigDict(fields))


@pytest.mark.parametrize("batch", [1, 2, 5, 16])
def test_looped_attention_matches_xla_forward_and_gradients(batch):
  """The CPU attention (loop over examples, probabilities recomputed in the backward pass) is
  jax.nn's softmax(q k^T / sqrt(d)) v, values and gradients, batch sharded over the 8 test
  devices or not (16: two loop steps of one example per device)."""
  q, k, v = (jax.random.normal(key, (batch, 9, 3, 8))
             for key in jax.random.split(jax.random.key(batch), 3))
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  spec = jax.sharding.PartitionSpec("data" if batch % jax.device_count() == 0 else None)
  q, k, v = (jax.device_put(x, jax.sharding.NamedSharding(mesh, spec)) for x in (q, k, v))

  def loss(fn):
    return jax.jit(jax.value_and_grad(lambda *a: jnp.sum(jnp.sin(fn(*a))), argnums=(0, 1, 2)))

  got_value, got_grads = loss(attention.looped_attention)(q, k, v)
  want_value, want_grads = loss(jax.nn.dot_product_attention)(q, k, v)
  np.testing.assert_allclose(got_value, want_value, rtol=1e-4)  # a sum of 3,456 terms
  for got, want in zip(got_grads, want_grads):
    np.testing.assert_allclose(got, want, atol=2e-5)
  half = [x.astype(jnp.bfloat16) for x in (q, k, v)]
  np.testing.assert_allclose(np.asarray(attention.looped_attention(*half), np.float32),
                             np.asarray(jax.nn.dot_product_attention(q, k, v)), atol=3e-2)
  # bfloat16 gradients (the backward's statistics and delta are float32): within bf16 rounding.
  for got, want in zip(loss(attention.looped_attention)(*half)[1], want_grads):
    np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=3e-2)
  with pytest.raises(NotImplementedError, match="mask"):
    attention.dot_product_attention(q, k, v, mask=jnp.ones((batch, 1, 9, 9), bool))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_self_attention_is_flax_multi_head_attention_with_its_parameters(dtype):
  """attention.SelfAttention initialises the very parameters of flax's MultiHeadDotProductAttention
  (tree, shapes, values, logical axes) and computes the same outputs and gradients from them."""
  x = jax.random.normal(jax.random.key(0), (3, 7, 24))
  xavier = nn.initializers.xavier_uniform()
  flax_attention = nn.MultiHeadDotProductAttention(
      num_heads=4, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=nn.with_logical_partitioning(xavier, ("embed", "heads", "kv")),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("heads", "kv")),
      out_kernel_init=nn.with_logical_partitioning(xavier, ("heads", "kv", "embed")),
      out_bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
      attention_fn=attention.dot_product_attention)
  ours = attention.SelfAttention(4, dtype)
  want_params = flax_attention.init(jax.random.key(1), x, x)
  got_params = ours.init(jax.random.key(1), x)
  is_boxed = lambda leaf: isinstance(leaf, nn.Partitioned)  # noqa: E731
  assert (jax.tree.map(lambda p: p.names, got_params, is_leaf=is_boxed)
          == jax.tree.map(lambda p: p.names, want_params, is_leaf=is_boxed))
  jax.tree.map(np.testing.assert_array_equal, nn.unbox(got_params), nn.unbox(want_params))
  # Random biases too, so that a bias applied in the wrong place would show. Scaled so that the
  # softmax is not saturated: with unit-normal weights the scores reach ~100 and rounding in the
  # projections alone moves the gradients by ~1e-4 (both ~6e-3 from a float64 reference).
  params = jax.tree.map(lambda p: 0.3 * jax.random.normal(jax.random.key(p.size), p.shape),
                        nn.unbox(want_params))
  got, got_grads = jax.value_and_grad(
      lambda p, x: jnp.sum(jnp.sin(ours.apply(p, x).astype(jnp.float32))), (0, 1))(params, x)
  want, want_grads = jax.value_and_grad(
      lambda p, x: jnp.sum(jnp.sin(flax_attention.apply(p, x, x).astype(jnp.float32))),
      (0, 1))(params, x)
  tol = 1e-5 if dtype == jnp.float32 else 5e-2
  np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=tol, atol=tol * 10),
               got_grads, want_grads)
  with pytest.raises(ValueError, match="divisible"):
    attention.SelfAttention(5).init(jax.random.key(1), x)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("shape", [(1, 24), (3, 7, 24)])
def test_layer_norm_is_flax_layer_norm_with_its_parameters(dtype, shape):
  """layer_norm.LayerNorm has flax's nn.LayerNorm parameters (names, values, logical axes) and
  its outputs and gradients (input, scale, bias), float32 and bfloat16 activations; the forward
  is also the formula in NumPy (float64)."""
  x = 3 * jax.random.normal(jax.random.key(0), shape) + 1  # Rows far from zero mean / unit std.
  init = lambda init: nn.with_logical_partitioning(init, ("norm",))  # noqa: E731
  flax_norm = nn.LayerNorm(epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32,
                           scale_init=init(nn.initializers.ones),
                           bias_init=init(nn.initializers.zeros))
  ours = layer_norm.LayerNorm(epsilon=1e-6, dtype=dtype)
  want_params, got_params = flax_norm.init(jax.random.key(1), x), ours.init(jax.random.key(1), x)
  is_boxed = lambda leaf: isinstance(leaf, nn.Partitioned)  # noqa: E731
  assert (jax.tree.map(lambda p: p.names, got_params, is_leaf=is_boxed)
          == jax.tree.map(lambda p: p.names, want_params, is_leaf=is_boxed))
  jax.tree.map(np.testing.assert_array_equal, nn.unbox(got_params), nn.unbox(want_params))
  params = jax.tree.map(lambda p: 1 + jax.random.normal(jax.random.key(p.size), p.shape),
                        nn.unbox(want_params))
  weights = jax.random.normal(jax.random.key(2), shape)  # d loss / d output

  def value_and_grads(module):
    loss = lambda p, x: jnp.sum(module.apply(p, x).astype(jnp.float32) * weights)  # noqa: E731
    return jax.jit(jax.value_and_grad(loss, (0, 1)))(params, x.astype(dtype))

  (got, got_grads), (want, want_grads) = value_and_grads(ours), value_and_grads(flax_norm)
  out = ours.apply(params, x.astype(dtype))
  assert out.dtype == dtype
  x64 = np.asarray(x.astype(dtype), np.float64)
  normalised = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-6)
  reference = normalised * np.asarray(params["params"]["scale"]) + np.asarray(
      params["params"]["bias"])
  tol = 1e-5 if dtype == jnp.float32 else 1e-2
  np.testing.assert_allclose(np.asarray(out, np.float64), reference, rtol=tol, atol=tol * 5)
  np.testing.assert_allclose(got, want, rtol=tol)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(np.asarray(g, np.float32),
                                                       np.asarray(w, np.float32), rtol=tol,
                                                       atol=tol),
               got_grads, want_grads)


def test_cpu_ynnpack_matches_xla_and_is_deterministic():
  """`cpu_ynnpack` (config_base.compiler_options) routes dots, convolutions and reductions to
  YNNPACK on CPU: a ResNet's (batch statistics in training mode; float32 and bf16) and a float32
  ViT's losses and gradients match XLA's own code, and a rerun gives the same bits (resume and
  "same seed, same result" rely on it)."""
  from jaxssl import config_base
  config = ml_collections.ConfigDict(dict(cpu_ynnpack=True))
  options = config_base.compiler_options(config)
  if jax.default_backend() == "cpu":
    assert options == {"xla_cpu_experimental_ynn_fusion_type":
                       "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
  config.cpu_ynnpack = False
  assert config_base.compiler_options(config) is None and config_base.compiler_options(None) is None

  images = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16, 16, 3)), jnp.float32)
  nets = [(ResNet(depth=18, width=8, stem="cifar", dtype=dtype), tol)
          for dtype, tol in ((jnp.float32, 1e-4), (jnp.bfloat16, 3e-2))]
  # float32 only: this tiny ViT's bf16 gradients differ from its float32 ones far beyond any
  # tolerance under XLA's own code already.
  nets.append((ViT(width=32, depth=2, mlp_dim=64, num_heads=2, patch_size=4), 1e-4))
  for net, tol in nets:
    variables = net.init(jax.random.key(0), images, train=False)

    def loss(params, net=net, variables=variables):
      out, _ = net.apply({**variables, "params": params}, images, train=True,
                         mutable=["batch_stats"])
      # Features weighted unequally: a ViT's output is layer-normed, so an unweighted mean of
      # (out - 0.5)^2 would be constant and its gradients pure rounding noise.
      weights = jnp.linspace(0.0, 2.0, out.shape[-1])
      return jnp.mean(jnp.square(out.astype(jnp.float32) - 0.5) * weights)

    grad = jax.value_and_grad(loss)
    reference = jax.jit(grad)(variables["params"])
    ynn = jax.jit(grad, compiler_options=options)
    first, again = ynn(variables["params"]), ynn(variables["params"])
    # Relative to each leaf's largest value, floored at 1e-3 of the largest gradient: some
    # gradients are zero up to rounding (a ViT's key biases, to which softmax is invariant).
    floor = 1e-3 * max(float(np.max(np.abs(c))) for c in jax.tree.leaves(reference[1]))
    for a, b, c in zip(jax.tree.leaves(first), jax.tree.leaves(again),
                       jax.tree.leaves(reference)):
      np.testing.assert_array_equal(a, b)
      scale = max(float(np.max(np.abs(c))), floor, 1e-12)
      np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(c) / scale, atol=tol)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's compiler passes")
def test_cpu_ynnpack_keeps_reductions_whole():
  """With YNNPACK dot fusions alone, XLA:CPU splits every reduction into a reduce-window and a
  reduce, ~10x slower (a bias gradient over 3152x2048: 1.2 -> 14 ms); `cpu_ynnpack` therefore
  hands reductions to YNNPACK too (config_base.compiler_options)."""
  from jaxssl import config_base
  x = jnp.ones((8, 64, 256))
  options = config_base.compiler_options(ml_collections.ConfigDict(dict(cpu_ynnpack=True)))
  layer_norm = nn.LayerNorm()
  variables = layer_norm.init(jax.random.key(0), x)
  grad = jax.grad(lambda v, x: jnp.sum(layer_norm.apply(v, x)**2) + jnp.sum(x, (0, 1))[0])
  for opts, split in ((options, False),
                      ({"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}, True)):
    hlo = jax.jit(grad).lower(variables, x).compile(compiler_options=opts).as_text()
    assert ("reduce-window" in hlo) == split
