"""Tests for jaxssl.augment: the contract, each op against NumPy, crop statistics, sharding.

Each distinct (config, shape) jits the pipeline anew (seconds on CPU), so tests share the jitted
default view and use small images.
"""
import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxssl import augment

IN_SIZE, OUT_SIZE = 20, 16  # the random crop then both up- and downsamples
IDENTITY_CROP = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))


def _cfg(**overrides):
  cfg = augment.default_view_config()
  cfg.update(overrides)
  return cfg


def _only_crop(**overrides):
  """Every op off but the (always-on) crop."""
  return _cfg(**{'flip_prob': 0.0, 'jitter_prob': 0.0, 'grayscale_prob': 0.0, 'blur_prob': 0.0,
                 'solarize_prob': 0.0, **overrides})


def _images(b, size=IN_SIZE, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (b, size, size, 3)).astype(np.uint8)


def _floats(shape, lo=0.0, hi=1.0, seed=0):
  return np.random.RandomState(seed).uniform(lo, hi, shape).astype(np.float32)


_default_view = jax.jit(functools.partial(
    augment.simclr_view, out_size=OUT_SIZE, cfg=augment.default_view_config()))


# ---------------------------------------------------------------------------------------------
# The pipeline's contract.


@pytest.mark.parametrize('b, dtype', [(1, np.uint8), (2, np.float32), (8, np.uint8)])
def test_view_shape_dtype_range(b, dtype):
  images = _images(b)
  if dtype == np.float32:
    images = images.astype(np.float32) / 255.0
  out = np.asarray(_default_view(jax.random.key(0), images))
  assert out.shape == (b, OUT_SIZE, OUT_SIZE, 3)
  assert out.dtype == np.float32
  assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def test_same_key_same_output_and_per_example_randomness():
  images = _images(8)
  a = _default_view(jax.random.key(1), images)
  np.testing.assert_array_equal(a, _default_view(jax.random.key(1), images))
  assert not np.allclose(a, _default_view(jax.random.key(2), images), atol=1e-3)
  # One image repeated: per-example keys must still give every copy its own augmentation.
  same = _default_view(jax.random.key(3), np.repeat(images[:1], 8, axis=0))
  for i in range(8):
    for j in range(i):
      assert np.abs(same[i] - same[j]).max() > 1e-3, (i, j)


def test_views_use_independent_keys():
  cfg = _only_crop()
  views = jax.jit(lambda rng, x: augment.simclr_views(
      rng, x, out_size=OUT_SIZE, cfg_list=[cfg, cfg]))(jax.random.key(0), _images(2))
  assert len(views) == 2 and all(v.shape == (2, OUT_SIZE, OUT_SIZE, 3) for v in views)
  assert not np.allclose(views[0], views[1], atol=1e-3)


def test_jits_once_and_sharded_batch_matches_unsharded():
  devices = jax.devices()
  assert len(devices) == 8, 'conftest sets 8 fake CPU devices'
  sharding = NamedSharding(Mesh(np.array(devices), ('data',)), P('data'))
  traces = []

  def view(rng, x):
    traces.append(1)
    return augment.simclr_view(rng, x, out_size=OUT_SIZE, cfg=augment.default_view_config())

  step = jax.jit(view)
  out = step(jax.random.key(4), jax.device_put(_images(8), sharding))
  step(jax.random.key(5), jax.device_put(_images(8, seed=1), sharding))
  assert len(traces) == 1
  # The work stays on each example's device: the output keeps the batch sharding.
  assert out.sharding.is_equivalent_to(sharding, out.ndim)
  np.testing.assert_allclose(out, _default_view(jax.random.key(4), _images(8)), atol=1e-6)


def test_center_view():
  images = _images(2)
  np.testing.assert_allclose(augment.center_view(images, out_size=IN_SIZE), images / 255.0,
                             atol=1e-7)
  resized = augment.center_view(images, out_size=OUT_SIZE)
  assert resized.shape == (2, OUT_SIZE, OUT_SIZE, 3) and resized.dtype == jnp.float32
  # uint8 and the same image as float in [0, 1] are one input.
  np.testing.assert_allclose(
      resized, augment.center_view(images.astype(np.float32) / 255.0, out_size=OUT_SIZE),
      atol=1e-6)
  np.testing.assert_allclose(
      augment.center_view(np.full((1, IN_SIZE, IN_SIZE, 3), 0.3, np.float32), out_size=OUT_SIZE),
      0.3, atol=1e-6)


def test_normalize():
  x = _floats((2, 4, 4, 3))
  mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
  np.testing.assert_allclose(augment.normalize(x, mean, std),
                             (x - np.array(mean)) / np.array(std), rtol=1e-6)


def test_standardize_per_image_matches_numpy_and_ignores_brightness_contrast_and_colour_cast():
  x = _floats((3, 8, 8, 3)) * 0.5 + 0.2
  out = np.asarray(augment.model_input(x, "per_image"))
  mean = x.mean(axis=(1, 2), keepdims=True)
  std = np.maximum(x.std(axis=(1, 2), keepdims=True), 0.05)
  np.testing.assert_allclose(out, (x - mean) / std, rtol=1e-5, atol=1e-5)
  # A per-channel affine change (contrast 1.3, colour cast) leaves the model input unchanged.
  shifted = x * 1.3 + np.array([-0.2, 0.05, -0.1], np.float32)
  np.testing.assert_allclose(augment.model_input(shifted, "per_image"), out, rtol=1e-4, atol=1e-4)
  # A flat image is not amplified: its std floor keeps it at zero instead of dividing by ~0.
  flat = np.full((1, 4, 4, 3), 0.7, np.float32)
  np.testing.assert_allclose(augment.model_input(flat, "per_image"), 0.0, atol=1e-5)
  np.testing.assert_allclose(augment.model_input(x, "fixed"), (x - 0.5) / 0.5, rtol=1e-6)
  # per_image+mean: the same 3 channels, then each channel's mean as a constant plane.
  both = np.asarray(augment.model_input(x, "per_image+mean"))
  assert both.shape == x.shape[:3] + (6,)
  np.testing.assert_allclose(both[..., :3], out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(both[..., 3:], np.broadcast_to((mean - 0.5) / 0.25, x.shape),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="input_norm"):
    augment.model_input(x, "imagenet")


# ---------------------------------------------------------------------------------------------
# The crop.


def test_identity_crop_is_a_plain_resize():
  # At the input size it is the identity: test_flip_grayscale_solarize_in_pipeline checks that.
  x = _floats((2, IN_SIZE, IN_SIZE, 3))
  out = jax.jit(functools.partial(augment.simclr_view, out_size=OUT_SIZE,
                                  cfg=_only_crop(**IDENTITY_CROP)))(jax.random.key(0), x)
  np.testing.assert_allclose(out, jax.image.resize(x, out.shape, 'linear'), atol=1e-6)


def test_sample_crop_first_fit_and_fallback():
  n = augment._CROP_ATTEMPTS
  u = dict(area=np.zeros(n, np.float32), ratio=np.full(n, 0.5, np.float32),
           y=np.float32(0.999), x=np.float32(0.0))
  # Attempt 0 (full area at aspect 2) overflows the width; attempt 1 (area 0.1, square) fits.
  u['area'][0], u['ratio'][0] = 1.0, 1.0
  box = augment.sample_crop(u, IN_SIZE, IN_SIZE, scale=(0.1, 1.0), ratio=(0.5, 2.0))
  np.testing.assert_array_equal(box, (14, 0, 6, 6))  # round(sqrt(40)) = 6; y0 = h - 6 at u->1
  # Aspect 2 at full area never fits a square: torchvision's centre crop clamped to ratio 2.
  box = augment.sample_crop(u, IN_SIZE, IN_SIZE, scale=(1.0, 1.0), ratio=(2.0, 2.0))
  np.testing.assert_array_equal(box, (5, 0, 10, 20))


def test_crop_area_statistics_from_coordinate_image():
  size, scale, ratio = 32, (0.25, 0.5), (3 / 4, 4 / 3)
  ramp = (np.arange(size) + 0.5) / size
  coords = np.zeros((16, size, size, 3), np.float32)
  coords[..., 0] = ramp[None, None, :]  # x
  coords[..., 1] = ramp[None, :, None]  # y
  view = jax.jit(functools.partial(
      augment.simclr_view, out_size=OUT_SIZE, cfg=_only_crop(crop_scale=scale, crop_ratio=ratio)))
  out = np.concatenate([view(jax.random.key(i), coords) for i in range(8)])
  # Pixel i samples the crop at x0 + (i + .5) * w / out, so the ramp spans (out - 1) / out of the
  # crop; skip the border pixels, where the resampler clamps at the image edge.
  span = lambda v: (v[:, -2] - v[:, 1]) * OUT_SIZE / (OUT_SIZE - 3)
  width, height = span(out[:, 0, :, 0]), span(out[:, :, 0, 1])
  area, aspect = width * height, width / height
  assert scale[0] - 0.03 < area.min() and area.max() < scale[1] + 0.03
  assert abs(area.mean() - np.mean(scale)) < 0.03, area.mean()
  assert ratio[0] - 0.1 < aspect.min() and aspect.max() < ratio[1] + 0.1
  assert width.std() > 0.05  # the crops really vary
  # Crops lie inside the image and are placed uniformly, so their centres average to the middle.
  centre = (out[:, 0, -2, 0] + out[:, 0, 1, 0]) / 2
  assert (centre - width / 2 > -0.02).all() and (centre + width / 2 < 1.02).all()
  assert abs(centre.mean() - 0.5) < 0.04, centre.mean()


# ---------------------------------------------------------------------------------------------
# Each op in the pipeline's order, against NumPy.


def test_flip_grayscale_solarize_in_pipeline():
  x = _floats((2, IN_SIZE, IN_SIZE, 3))
  cfg = _only_crop(flip_prob=1.0, grayscale_prob=1.0, solarize_prob=1.0, **IDENTITY_CROP)
  out = jax.jit(functools.partial(augment.simclr_view, out_size=IN_SIZE, cfg=cfg))(
      jax.random.key(0), x)
  gray = _np_gray(x[:, :, ::-1])
  np.testing.assert_allclose(out, np.where(gray >= 0.5, 1 - gray, gray), atol=1e-5)


def test_brightness_in_pipeline_scales_each_image_by_its_own_factor():
  x = _floats((8, IN_SIZE, IN_SIZE, 3), 0.2, 0.6)  # x * [0.6, 1.4] never clips
  cfg = _only_crop(jitter_prob=1.0, brightness=0.4, contrast=0.0, saturation=0.0, hue=0.0,
                   **IDENTITY_CROP)
  out = jax.jit(functools.partial(augment.simclr_view, out_size=IN_SIZE, cfg=cfg))(
      jax.random.key(0), x)
  factor = np.asarray(out) / x
  per_image = factor.reshape(8, -1)
  np.testing.assert_allclose(per_image / per_image[:, :1], 1.0, rtol=1e-5)
  assert (0.6 <= per_image[:, 0]).all() and (per_image[:, 0] <= 1.4).all()
  assert np.unique(per_image[:, 0].round(4)).size == 8


def _np_gray(x):
  return np.repeat((x @ np.array([0.299, 0.587, 0.114]))[..., None], 3, axis=-1)


def _np_brightness(x, f):
  return np.clip(f * x, 0, 1)


def _np_contrast(x, f):
  mean = _np_gray(x)[..., 0].mean(axis=(-2, -1))[..., None, None, None]
  return np.clip(f * x + (1 - f) * mean, 0, 1)


def _np_saturation(x, f):
  return np.clip(f * x + (1 - f) * _np_gray(x), 0, 1)


def _np_hue(x, delta):
  def shift(p):
    h, s, v = colorsys.rgb_to_hsv(*p)
    return colorsys.hsv_to_rgb((h + delta) % 1.0, s, v)
  return np.apply_along_axis(shift, -1, x)


def test_colour_ops_match_numpy():
  x = _floats((2, 6, 6, 3))
  ops = jax.jit(lambda x: (augment.grayscale(x), augment.solarize(x),
                           augment.adjust_brightness(x, 1.3), augment.adjust_contrast(x, 0.6),
                           augment.adjust_saturation(x, 1.5)))
  gray, solar, bright, contrast, sat = ops(x)
  np.testing.assert_allclose(gray, _np_gray(x), atol=1e-6)
  np.testing.assert_allclose(solar, np.where(x >= 0.5, 1 - x, x))
  np.testing.assert_allclose(bright, _np_brightness(x, 1.3), atol=1e-6)
  np.testing.assert_allclose(contrast, _np_contrast(x, 0.6), atol=1e-6)
  np.testing.assert_allclose(sat, _np_saturation(x, 1.5), atol=1e-6)


def test_hsv_matches_colorsys_and_round_trips():
  x = _floats((64, 3))
  x[:4] = [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 1, 0]]  # black, white, grey, a tie in max
  hsv = np.asarray(jax.jit(augment.rgb_to_hsv)(x))
  np.testing.assert_allclose(hsv, [colorsys.rgb_to_hsv(*p) for p in x], atol=1e-5)
  np.testing.assert_allclose(jax.jit(augment.hsv_to_rgb)(hsv), x, atol=1e-5)
  adjust_hue = jax.jit(augment.adjust_hue)
  np.testing.assert_allclose(adjust_hue(x, 0.0), x, atol=1e-5)
  np.testing.assert_allclose(adjust_hue(x, 0.3), _np_hue(x, 0.3), atol=1e-5)


def test_color_jitter_applies_ops_in_the_drawn_order():
  x = _floats((8, 8, 3))
  # With strengths 0.4, 0.4, 0.8, 0.1 these uniforms give factors 1.4, 0.6, 1.8 and hue +0.04.
  u_factor = np.array([1.0, 0.0, 1.0, 0.7], np.float32)
  jitter = jax.jit(lambda order: augment.color_jitter(
      dict(order=order, factor=u_factor), x, brightness=0.4, contrast=0.4, saturation=0.8,
      hue=0.1))
  # jit fuses the ops, which once exposed a rounding-sensitive hue sector choice; keep it jitted.
  forward = jitter(np.array([0.1, 0.2, 0.3, 0.4], np.float32))
  backward = jitter(np.array([0.4, 0.3, 0.2, 0.1], np.float32))
  expect_forward = _np_hue(_np_saturation(_np_contrast(_np_brightness(x, 1.4), 0.6), 1.8), 0.04)
  expect_backward = _np_brightness(_np_contrast(_np_saturation(_np_hue(x, 0.04), 1.8), 0.6), 1.4)
  np.testing.assert_allclose(forward, expect_forward, atol=1e-5)
  np.testing.assert_allclose(backward, expect_backward, atol=1e-5)
  assert not np.allclose(forward, backward, atol=1e-3)


def _np_blur(x, sigma, k):
  r = k // 2
  w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
  w /= w.sum()
  for axis in (0, 1):
    pad = [(0, 0)] * 3
    pad[axis] = (r, r)
    xp = np.pad(x, pad, mode='reflect')
    x = sum(w[j] * np.take(xp, np.arange(j, j + x.shape[axis]), axis=axis) for j in range(k))
  return x


def test_gaussian_blur():
  assert [augment.blur_kernel_size(s) for s in (16, 32, 96, 224)] == [3, 3, 9, 23]
  blur = jax.jit(augment.gaussian_blur, static_argnums=2)
  x = _floats((IN_SIZE, IN_SIZE, 3))
  np.testing.assert_allclose(blur(x, 1e-3, 5), x, atol=1e-6)
  np.testing.assert_allclose(blur(x, 1.5, 5), _np_blur(x, 1.5, 5), atol=1e-5)
  flat = np.full((IN_SIZE, IN_SIZE, 3), 0.7, np.float32)
  np.testing.assert_allclose(blur(flat, 2.0, 5), flat, atol=1e-6)
  # Per-example sigmas under vmap, as the pipeline uses it.
  sigmas = np.array([0.5, 2.0], np.float32)
  batch = np.stack([x, x[::-1]])
  blurred = jax.jit(jax.vmap(lambda im, s: augment.gaussian_blur(im, s, 5)))(batch, sigmas)
  for i in range(2):
    np.testing.assert_allclose(blurred[i], _np_blur(batch[i], sigmas[i], 5), atol=1e-5)
