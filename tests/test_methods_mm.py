"""MMV and MIL-NCE: the paper-scale config traces, losses train, sharding changes nothing, and
the multimodal embedding contract holds."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from configs import milnce, mmv
from jaxssl import aot, augment, config_base, losses, methods, sharding
from jaxssl.data import avshapes
from jaxssl.methods import _multimodal
from quick_runs import train_on_one_device
from sharded_loss import loss_metrics_grads, trace_train_step

CONFIGS = {"mmv": mmv, "milnce": milnce}


def build(config):
  return methods.build(config, methods.DataInfo(image_size=config.data.image_size,
                                                num_classes=avshapes.NUM_CLASSES))


def batch_of(config, size):
  """A batch as the data pipeline delivers it: the avshapes records plus their indices."""
  batch = avshapes.source_from_config("train", config.data).get_batch(np.arange(size))
  return dict(batch, index=np.arange(size, dtype=np.int32))


@pytest.mark.parametrize("name,variant", [("mmv", "full"), ("milnce", "full"), ("mmv", "")])
def test_config_traces_one_train_step(name, variant):
  """`:full` (the paper's recipe) and the CPU default (scenes, time-strided stem) at their own
  shapes, traced only, so neither can rot."""
  config = CONFIGS[name].get_config(variant)
  config_base.validate(config, 1)
  method = build(config)
  abstract_state, new_state, metrics = trace_train_step(method, config, aot.abstract_batch(config))
  assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state) == jax.tree.map(
      lambda a: (a.shape, a.dtype), abstract_state)
  assert metrics["loss"].shape == () and "probe_acc" in metrics
  if variant == "full":  # The paper's video backbone: a TSM-ResNet50 has ResNet-50's 23.51M.
    video_params = abstract_state["params"]["video_encoder"]
    assert sum(x.size for x in jax.tree.leaves(video_params)) == pytest.approx(23.51e6, rel=1e-3)


def test_loss_equal_on_8_devices_and_1():
  """Finite loss and gradients on an avshapes batch; the FSDP mesh (batch and parameters split
  over 8 devices) gives the 1-device numbers: the NCE/MIL-NCE denominators cover the global
  batch, not each device's share. MMV only: MIL-NCE's model is MMV's video and text halves and
  its loss MMV's video-text term, so a second 8-device compile would cover nothing new."""
  config = mmv.get_config("quick")
  batch = batch_of(config, config.batch_size)
  one = sharding.make_mesh(dict(data=1, fsdp=1, model=1), jax.devices()[:1])
  loss1, metrics1, grads1, _ = loss_metrics_grads(build(config), config, one, batch)
  eight = sharding.make_mesh(sharding.PRESETS["fsdp"])
  loss8, metrics8, grads8, state_sh = loss_metrics_grads(build(config), config, eight, batch)
  assert np.isfinite(loss1) and all(np.isfinite(g).all() for g in jax.tree.leaves(grads1))
  assert any(np.abs(g).max() > 0 for g in jax.tree.leaves(grads1["text_encoder"]))
  np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
  for key in metrics1:
    np.testing.assert_allclose(metrics8[key], metrics1[key], rtol=1e-5, atol=1e-6, err_msg=key)
  # float32 rounding relative to each tensor's scale, as in test_sharding.py.
  for g8, g1 in zip(jax.tree.leaves(grads8), jax.tree.leaves(grads1)):
    np.testing.assert_allclose(g8, g1, rtol=1e-3, atol=1e-4 * float(np.abs(g1).max()) + 1e-6)
  specs = [s.spec for s in jax.tree.leaves(state_sh["params"])]
  assert any(any(a is not None for a in spec) for spec in specs)


@pytest.mark.parametrize("graph", ["shared", "disjoint", "fac"])
def test_mmv_graphs_and_embed_contract(graph):
  config = mmv.get_config("quick")
  config.mmv.graph = graph
  method = build(config)
  variables = nn.unbox(jax.eval_shape(method.init, jax.random.key(0)))  # Shapes only: no compile.
  params = variables.pop("params")
  b = 4
  batch = batch_of(config, b)
  out = jax.eval_shape(method.embed_modalities, params, variables, video=batch["video"],
                       audio=batch["audio"], text=batch["text"][:, 0])
  va, vat = config.mmv.va_dim, config.mmv.va_dim if graph == "shared" else config.mmv.vat_dim
  video_dim = out["video_features"].shape[1]
  assert {k: v.shape for k, v in out.items()} == {
      "video_features": (b, video_dim), "video_va": (b, va), "video_vat": (b, vat),
      "audio_features": (b, out["audio_features"].shape[1]), "audio_va": (b, va),
      "text_vat": (b, vat)}
  assert all(v.dtype == jnp.float32 for v in out.values())
  loss, (metrics, _) = jax.eval_shape(method.loss, params, variables, batch, jax.random.key(1), 0)
  assert loss.shape == () and {"loss_va", "loss_vt", "va_acc", "vt_acc", "probe_acc"} <= set(
      metrics)
  # Heads per graph: fac maps VA to VAT, disjoint has a second video head, shared neither.
  assert ("va_to_vat" in params) == (graph == "fac")
  assert ("video_to_vt" in params) == (graph == "disjoint")


def test_embed_modalities_runs_each_modality_alone_and_rejects_unknown():
  config = milnce.get_config("quick")
  method = build(config)
  variables = nn.unbox(jax.jit(method.init)(jax.random.key(0)))
  params = variables.pop("params")
  batch = batch_of(config, 4)
  embed = jax.jit(method.embed_modalities)
  video = embed(params, variables, video=batch["video"])
  text = embed(params, variables, text=batch["text"][:, 1])
  assert set(video) == {"video_features", "video_vat"} and set(text) == {"text_vat"}
  np.testing.assert_allclose(method.embed(params, variables, batch["video"]),
                             video["video_features"], rtol=1e-5, atol=1e-6)
  # Unnormalised, deterministic (no augmentation) and per clip (BatchNorm in inference mode).
  assert not np.allclose(np.linalg.norm(video["video_vat"], axis=1), 1.0)
  np.testing.assert_allclose(embed(params, variables, video=batch["video"][:2])["video_vat"],
                             video["video_vat"][:2], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="audio"):
    method.embed_modalities(params, variables, audio=batch["audio"])


def test_milnce_config_trains_and_reports_retrieval(tmp_path):
  """configs/milnce.py runs through the training loop and the multimodal evaluator as MMV does:
  text<->video retrieval, zero-shot classification and the video probe, beside the random model;
  nothing of audio, which MIL-NCE does not embed."""
  config = milnce.get_config("quick")
  config.total_steps, config.log_every, config.ckpt_every = 3, 1, 3
  final = train_on_one_device(config, tmp_path / "run")
  for key in ("t2v/R@1", "t2v/R@5", "v2t/R@1", "t2v/median_rank", "zeroshot/top1",
              "linear/video/top1"):
    assert key in final and key + "/random_init" in final, key
  assert 0.0 <= final["t2v/R@1"] <= 1.0 and final["step"] == 3
  assert not [k for k in final if k.startswith("a2v") or "audio" in k]


def test_mmv_quick_training_lowers_the_loss():
  config = mmv.get_config("quick")
  method = build(config)
  variables = nn.unbox(jax.jit(method.init)(jax.random.key(0)))
  params = variables.pop("params")
  tx = optax.adam(3e-3)
  opt_state = tx.init(params)
  batch = batch_of(config, config.batch_size)

  @jax.jit
  def step(params, model_state, opt_state, rng):
    (loss, (_, model_state)), grads = jax.value_and_grad(method.loss, has_aux=True)(
        params, model_state, batch, rng, 0)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), model_state, opt_state, loss

  history = []
  for i in range(12):
    params, variables, opt_state, loss = step(params, variables, opt_state, jax.random.key(i))
    history.append(float(loss))
  assert np.isfinite(history).all() and np.mean(history[-3:]) < history[0] - 0.5, history


def test_caption_negatives_queue_fills_with_first_captions_and_adds_negatives():
  config = mmv.get_config("quick")
  b = config.batch_size
  config.mmv.caption_negatives = 2 * b
  method = build(config)
  variables = nn.unbox(jax.jit(method.init)(jax.random.key(0)))
  params = variables.pop("params")
  queue = variables["caption_queue"]
  assert queue["keys"].shape == (2 * b, config.data.max_caption_len) and not queue["keys"].any()
  plain = mmv.get_config("quick")
  without = {k: v for k, v in variables.items() if k != "caption_queue"}
  batch = batch_of(config, b)
  rng = jax.random.key(1)
  loss = jax.jit(lambda p, s, batch: method.loss(p, s, batch, rng, 0))
  loss_plain = jax.jit(lambda p, s, batch: build(plain).loss(p, s, batch, rng, 0))
  # An empty queue adds nothing; the batch's first captions go into its oldest rows.
  value, (metrics, state) = loss(params, variables, batch)
  plain_value, (plain_metrics, _) = loss_plain(params, without, batch)
  np.testing.assert_allclose(value, plain_value, rtol=1e-6)
  np.testing.assert_array_equal(state["caption_queue"]["keys"][:b], batch["text"][:, 0])
  assert not state["caption_queue"]["keys"][b:].any() and int(state["caption_queue"]["ptr"]) == b
  # Filled rows are more negatives in every clip's denominator: the video-text loss grows.
  other = batch_of(config, 3 * b)
  filled = {**variables, "caption_queue": {"keys": jnp.asarray(other["text"][b:, 0]),
                                           "ptr": jnp.zeros((), jnp.int32)}}
  assert loss(params, filled, batch)[1][0]["loss_vt"] > plain_metrics["loss_vt"] + 1e-3
  config.mmv.caption_negatives = b + 1
  with pytest.raises(ValueError, match="multiple of the global batch"):
    build(config)


def test_mmv_terms_use_their_own_temperatures():
  """mmv.temperature_va scales the video-audio NCE and mmv.temperature the video-text MIL-NCE,
  each recomputed here from the model's embeddings with `losses.mil_nce`."""
  config = mmv.get_config("quick")
  config.mmv.temperature, config.mmv.temperature_va = 0.3, 0.05
  method = build(config)
  variables = nn.unbox(jax.jit(method.init)(jax.random.key(0)))
  params = variables.pop("params")
  batch = batch_of(config, 4)
  rng = jax.random.key(1)
  _, (metrics, _) = jax.jit(lambda p, s, b: method.loss(p, s, b, rng, 0))(params, variables, batch)
  out, _ = method.forward(params, variables, method.train_inputs(rng, batch))
  unit = losses.l2_normalize
  loss_va = losses.mil_nce(unit(out["video_va"]) / 0.05, unit(out["audio_va"])[:, None])
  loss_vt = losses.mil_nce(unit(out["video_vat"]) / 0.3, unit(out["text_vat"]))
  np.testing.assert_allclose(metrics["loss_va"], loss_va, rtol=1e-4)
  np.testing.assert_allclose(metrics["loss_vt"], loss_vt, rtol=1e-4)


def test_unlabelled_data_trains_without_a_probe():
  # Converted real clips may come without labels (num_classes 0): no probe, loss unchanged.
  config = milnce.get_config("quick")
  method = methods.build(config, methods.DataInfo(image_size=config.data.image_size,
                                                  num_classes=0))
  variables = nn.unbox(jax.eval_shape(method.init, jax.random.key(0)))
  params = variables.pop("params")
  assert "online_probe" not in params
  batch = batch_of(config, 4)
  loss, (metrics, _) = jax.eval_shape(method.loss, params, variables, batch, jax.random.key(1), 0)
  assert loss.shape == () and set(metrics) == {"vt_acc"}


def test_colour_bypass_feeds_the_trunk_standardised_frames_and_the_heads_the_colours():
  """mmv's CPU default: the video trunk gets the 3 standardised channels only; the clip's mean
  colour and its std over time (from the constant planes) are appended to its features."""
  seen = []

  class Trunk(nn.Module):
    @nn.compact
    def __call__(self, video, train):
      seen.append(video.shape)
      return jnp.mean(video, axis=(1, 2, 3))

  x = np.random.default_rng(0).uniform(size=(2, 4, 8, 8, 3)).astype(np.float32)
  x[1, 2] *= 0.5  # A darker frame: the colour's std over time is not zero.
  inputs = augment.model_input(x.reshape(8, 8, 8, 3), "per_image+mean").reshape(2, 4, 8, 8, 6)
  out = _multimodal.ColourBypass(Trunk()).apply({}, inputs, train=False)
  assert seen == [(2, 4, 8, 8, 3)] and out.shape == (2, 3 + 6)
  colour = (x.mean(axis=(2, 3)) - 0.5) / 0.25  # (B, T, 3)
  np.testing.assert_allclose(out[:, 3:6], colour.mean(1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out[:, 6:], colour.std(1), rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="6 channels"):
    _multimodal.ColourBypass(Trunk()).apply({}, inputs[..., :3], train=False)
  config = mmv.get_config("quick")
  config.input_norm = "per_image"
  with pytest.raises(ValueError, match="per_image\\+mean"):
    build(config)


def test_frame_differences_feed_each_frame_beside_its_change():
  seen = []

  class Trunk(nn.Module):
    @nn.compact
    def __call__(self, video, train):
      seen.append(np.asarray(video))
      return jnp.zeros((video.shape[0], 1))

  x = np.random.default_rng(0).normal(size=(2, 4, 5, 5, 3)).astype(np.float32)
  _multimodal.FrameDifferences(Trunk()).apply({}, x, train=False)
  fed = seen[0]
  assert fed.shape == (2, 4, 5, 5, 6)
  np.testing.assert_array_equal(fed[..., :3], x)
  np.testing.assert_array_equal(fed[:, 0, ..., 3:], 0.0)
  np.testing.assert_allclose(fed[:, 1:, ..., 3:], x[:, 1:] - x[:, :-1], rtol=1e-6)


def test_vit_video_encoder_traces_the_mmv_step():
  """`--config.video.arch=vit` (ViViT-style tubelets) builds and traces one loss and gradient."""
  config = mmv.get_config("quick")
  config.video.arch, config.video.vit_variant = "vit", "mu/4"
  method = build(config)
  variables = nn.unbox(jax.eval_shape(method.init, jax.random.key(0)))
  params = variables.pop("params")
  assert "video_encoder" in params and "encoder" in params["video_encoder"]
  grads, (_, _) = jax.eval_shape(jax.grad(method.loss, has_aux=True), params, variables,
                                 batch_of(config, 4), jax.random.key(1), 0)
  assert jax.tree.structure(grads) == jax.tree.structure(params)
  config.video.arch = "s3d"
  with pytest.raises(ValueError, match="video.arch"):
    build(config)
