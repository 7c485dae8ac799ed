"""MAE and VideoMAE: the loss against NumPy, masking, patch order, the decoder's unshuffling, the
paper-scale configs (traced, not run), layer-wise learning-rate decay and short training runs."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from configs import finetune, mae as mae_config, videomae as videomae_config
from jaxssl import aot, losses, methods, optim
from jaxssl.data import avshapes
from jaxssl.models import mae as mae_lib
from jaxssl.models import ViT, vit_config
from jaxssl.models.vit import posemb_sincos
from sharded_loss import trace_train_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- the loss, against NumPy
def np_mae(pred, target, mask, norm_pix=True, channels=None):
  """The papers' code in NumPy: MAE's forward_loss, or VideoMAE's per-channel target."""
  pred, target, mask = (np.asarray(a, np.float64) for a in (pred, target, mask))
  if norm_pix and channels:  # VideoMAE: 'b n (p c)', statistics over p per channel.
    n, length, p = target.shape
    t = target.reshape(n, length, p // channels, channels)
    t = (t - t.mean(2, keepdims=True)) / (np.sqrt(t.var(2, ddof=1, keepdims=True)) + 1e-6)
    target = t.reshape(n, length, p)
  elif norm_pix:  # MAE: per patch, unbiased variance (torch's default) + 1e-6 inside the root.
    mean = target.mean(-1, keepdims=True)
    var = target.var(-1, ddof=1, keepdims=True)
    target = (target - mean) / (var + 1e-6)**.5
  loss = ((pred - target)**2).mean(-1)
  return (loss * mask).sum() / mask.sum()


@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_mae_loss_matches_numpy(norm_pix, channels, batch):
  rng = np.random.default_rng(batch)
  pred = rng.normal(size=(batch, 16, 48)).astype(np.float32)
  target = rng.uniform(-1, 2, size=(batch, 16, 48)).astype(np.float32)
  mask = (rng.uniform(size=(batch, 16)) < 0.75).astype(np.float32)
  mask[:, 0] = 1  # At least one masked patch per sample.
  got = losses.mae(pred, target, mask, norm_pix=norm_pix, channels=channels)
  np.testing.assert_allclose(got, np_mae(pred, target, mask, norm_pix, channels), rtol=2e-5)


def test_mae_loss_counts_masked_patches_only_and_takes_bf16():
  rng = np.random.default_rng(0)
  pred, target = rng.normal(size=(2, 2, 8, 12)).astype(np.float32)
  mask = np.array([[1, 0, 0, 1, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0, 0, 0]], np.float32)
  garbage = np.where(mask[..., None] > 0, pred, 1e6)  # Visible predictions must not count.
  np.testing.assert_allclose(losses.mae(garbage, target, mask), np_mae(pred, target, mask),
                             rtol=2e-5)
  bf16 = losses.mae(jnp.asarray(pred, jnp.bfloat16), jnp.asarray(target, jnp.bfloat16), mask)
  assert bf16.dtype == jnp.float32
  ref = np_mae(np.asarray(jnp.asarray(pred, jnp.bfloat16), np.float32),
               np.asarray(jnp.asarray(target, jnp.bfloat16), np.float32), mask)
  np.testing.assert_allclose(bf16, ref, rtol=1e-4)
  assert float(losses.mae(pred, target, np.zeros_like(mask))) == 0.0
  with pytest.raises(ValueError, match="mae expects"):
    losses.mae(pred, target[:, :4], mask)


# ---------------------------------------------------------------- masking and patch order
@pytest.mark.parametrize("length,ratio", [(64, 0.75), (20, 0.9), (7, 0.5)])
def test_random_masking_keeps_exactly_int_L_times_one_minus_ratio(length, ratio):
  ids_keep, mask, ids_restore = mae_lib.random_masking(jax.random.key(1), 6, length, ratio)
  keep = int(length * (1 - ratio))
  assert ids_keep.shape == (6, keep)
  np.testing.assert_array_equal(mask.sum(1), length - keep)
  # The kept ids are exactly the unmasked positions; ids_restore inverts the shuffle (kept
  # tokens first, then the masked ones).
  ids_shuffle = np.argsort(np.asarray(ids_restore), axis=1)
  np.testing.assert_array_equal(ids_shuffle[:, :keep], ids_keep)
  for i in range(6):
    assert sorted(np.asarray(ids_keep[i])) == list(np.flatnonzero(mask[i] == 0))
  np.testing.assert_array_equal(np.take_along_axis(ids_shuffle, np.asarray(ids_restore), 1),
                                np.arange(length)[None].repeat(6, 0))
  # Different samples get different masks.
  assert len({tuple(m) for m in np.asarray(mask)}) > 1
  with pytest.raises(ValueError, match="mask_ratio"):
    mae_lib.random_masking(jax.random.key(1), 2, length, 1.0)


def test_tube_mask_is_constant_over_time():
  grid = (4, 3, 5)
  ids_keep, mask, ids_restore = mae_lib.tube_masking(jax.random.key(2), 3, grid, 0.9)
  per_frame = np.asarray(mask).reshape(3, *grid)
  assert (per_frame == per_frame[:, :1]).all()
  np.testing.assert_array_equal(per_frame[:, 0].reshape(3, -1).sum(1), 15 - int(15 * 0.1))
  assert ids_keep.shape == (3, 4 * int(15 * 0.1))
  for i in range(3):
    np.testing.assert_array_equal(ids_keep[i], np.flatnonzero(mask[i] == 0))
    order = np.concatenate([ids_keep[i], np.flatnonzero(mask[i])])
    np.testing.assert_array_equal(order[np.asarray(ids_restore[i])], np.arange(60))


def test_patchify_uses_mae_order_and_round_trips():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 8, 12, 3)).astype(np.float32)
  # MAE's patchify on NCHW: 'nchpwq->nhwpqc'.
  nchw = images.transpose(0, 3, 1, 2).reshape(2, 3, 2, 4, 3, 4)
  ref = np.einsum("nchpwq->nhwpqc", nchw).reshape(2, 6, 48)
  patches = mae_lib.patchify(images, 4)
  np.testing.assert_array_equal(patches, ref)
  np.testing.assert_array_equal(mae_lib.unpatchify(patches, (2, 3), 4), images)
  # VideoMAE's 'b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c'.
  clips = rng.normal(size=(2, 4, 8, 8, 3)).astype(np.float32)
  bcthw = clips.transpose(0, 4, 1, 2, 3).reshape(2, 3, 2, 2, 2, 4, 2, 4)  # b c t p0 h p1 w p2
  ref = bcthw.transpose(0, 2, 4, 6, 3, 5, 7, 1).reshape(2, 8, 2 * 4 * 4 * 3)
  patches = mae_lib.patchify(clips, 4, tubelet=2)
  np.testing.assert_array_equal(patches, ref)
  np.testing.assert_array_equal(mae_lib.unpatchify(patches, (2, 2, 2), 4, 2), clips)


def test_vit_tubelet_tokens_follow_the_patch_order():
  """Token k of the ViT's tubelet embedding is patch k of `patchify` (so masks mean the same
  patch in the encoder and the loss), and 3D sin-cos positions are distinct per token."""
  vit = ViT(patch_size=4, width=12, depth=1, num_heads=2, pool="gap", tubelet=2)
  clips = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 8, 8, 3)), jnp.float32)
  params = nn.unbox(jax.jit(lambda x: vit.init(jax.random.key(0), x, train=False))(clips))
  kernel = params["params"]["embedding"]["kernel"]  # (2, 4, 4, 3, 12)
  _, tokens = jax.jit(lambda p, x: vit.apply(p, x, train=False, return_tokens=True))(params,
                                                                                   clips)
  embedded = jax.lax.conv_general_dilated(  # The ViT's tubelet embedding, on its own.
      clips, kernel, (2, 4, 4), "VALID", dimension_numbers=("NTHWC", "THWIO", "NTHWC"))
  embedded = embedded.reshape(1, 8, 12) + params["params"]["embedding"]["bias"]
  np.testing.assert_allclose(embedded, mae_lib.patchify(clips, 4, 2) @ kernel.reshape(-1, 12)
                             + params["params"]["embedding"]["bias"], rtol=1e-5, atol=1e-5)
  assert tokens.shape == (1, 8, 12)
  pos = np.asarray(posemb_sincos((2, 2, 2), 12))[0]
  assert len({tuple(p.round(5)) for p in pos}) == 8


def test_prediction_ignores_masked_pixels():
  """The encoder sees visible patches only: changing masked pixels leaves the prediction as it
  is; changing one visible patch changes it (the decoder put tokens back where they belong)."""
  config = mae_config.get_config("quick")
  method = methods.build(config, methods.DataInfo(image_size=16, num_classes=10))
  variables = jax.jit(method.init)(jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  ids_keep, mask, ids_restore = method.mask(jax.random.key(2), 2)
  apply = jax.jit(lambda x: method.net.apply(variables, x, ids_keep, ids_restore, train=False))
  pixel_mask = mae_lib.unpatchify(jnp.broadcast_to(mask[..., None], (2, 16, 48)), (4, 4), 4)
  noise = jax.random.normal(jax.random.key(3), images.shape)
  np.testing.assert_allclose(apply(images), apply(images + pixel_mask * noise), atol=1e-5)
  visible = 1 - pixel_mask
  assert np.abs(apply(images) - apply(images + visible * noise)).max() > 1e-3


# ---------------------------------------------------------------- configs and fine-tuning
def _block(d):  # A pre-norm ViT block: QKV + output projections, 2 LayerNorms, a 4d MLP.
  return 4 * (d * d + d) + 2 * 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)


def _decoder(d_enc, d, depth, patch_dim):  # embed, mask token, blocks, norm, pixel head
  return d_enc * d + d + d + depth * _block(d) + 2 * d + d * patch_dim + patch_dim


# MAE's ViT-B/16: 111.66M here; the reference's 111.91M also counts its 252,160 fixed position
# embeddings (197 x 768 + 197 x 512), which are not parameters here. VideoMAE's ViT-B: 94.22M.
MAE_B = (16 * 16 * 3 * 768 + 768) + 768 + 12 * _block(768) + 2 * 768 + _decoder(768, 512, 8, 768)
VIDEOMAE_B = (2 * 16 * 16 * 3 * 768 + 768) + 12 * _block(768) + 2 * 768 + _decoder(
    768, 384, 4, 1536)


@pytest.mark.parametrize("module,num_params", [(mae_config, MAE_B), (videomae_config, VIDEOMAE_B)])
def test_full_configs_trace_one_train_step(module, num_params):
  config = module.get_config("full")
  method = methods.build(config, methods.DataInfo(image_size=config.data.image_size,
                                                  num_classes=avshapes.NUM_CLASSES))
  abstract_state, new_state, metrics = trace_train_step(method, config, aot.abstract_batch(config))
  assert metrics["loss"].shape == () and "loss_mean_patch" in metrics
  assert jax.tree.map(lambda a: a.shape, new_state) == jax.tree.map(lambda a: a.shape,
                                                                    abstract_state)
  assert sum(x.size for x in jax.tree.leaves(abstract_state["params"])) == num_params


def test_layer_decay_scales_follow_beit_layer_ids():
  config = finetune.get_config("mae,quick")
  assert config.optimizer.layer_decay == 0.75
  method = methods.build(config, methods.DataInfo(image_size=16, num_classes=10))
  params = nn.unbox(jax.eval_shape(method.init, jax.random.key(0)))["params"]
  scales = optim.layer_decay_scales(params, 0.5)
  depth = vit_config(config.model.variant)["depth"]
  assert scales["classifier"]["head"]["kernel"] == 1.0
  assert scales["encoder"]["encoder"]["encoder_norm"]["scale"] == 1.0
  assert scales["encoder"]["cls"] == scales["encoder"]["embedding"]["kernel"] == 0.5**(depth + 1)
  for i in range(depth):
    assert scales["encoder"]["encoder"][f"block{i}"]["mlp"]["fc1"]["kernel"] == 0.5**(depth - i)
  with pytest.raises(ValueError, match="ViT"):
    optim.layer_decay_scales({"conv": {"kernel": jnp.zeros(3)}}, 0.5)


# ---------------------------------------------------------------- training runs
def _run(config, workdir, *overrides):
  cmd = [sys.executable, "-m", "jaxssl.main", f"--config={config}", f"--workdir={workdir}",
         "--config.eval.baselines=False", *overrides]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_mae_learns_and_draws_reconstructions(tmp_path):
  """Short MAE run: the masked-patch loss falls well below predicting the mean patch, and the
  reconstruction figure is written."""
  records = [r for r in _run("configs/mae.py:quick", tmp_path, "--config.total_steps=60",
                             "--config.batch_size=64", "--config.log_every=10",
                             "--config.optimizer.base_lr=2e-2",
                             "--config.optimizer.warmup_steps=5") if "loss" in r]
  last = records[-3:]  # Steps 40-60.
  assert np.mean([r["loss"] for r in last]) < 0.8 * np.mean([r["loss_mean_patch"] for r in last])
  assert os.path.getsize(tmp_path / "plots" / "reconstructions.png") > 5000


@pytest.mark.slow
def test_videomae_trains_on_clips(tmp_path):
  assert np.isfinite(_run("configs/videomae.py:quick", tmp_path)[-1]["loss"])
  with open(tmp_path / "eval" / "final.json") as f:
    assert 0 <= json.load(f)["linear/video/top1"] <= 1
  assert os.path.getsize(tmp_path / "plots" / "reconstructions.png") > 5000
