"""On-device SimCLR/BYOL augmentations: pure, jittable, batched.

Every random op draws its parameters from a per-example key and the pipeline is `jax.vmap`-ed over
the batch, so a batch sharded over devices is augmented where it lives, with the same result as
unsharded (threefry keys are partitionable), and no example shares an augmentation with another.

Images come in as uint8 or float in [0, 1] with shape (B, H, W, 3) and leave as float32 in [0, 1].
The recipe follows torchvision's as used by SimCLR/BYOL:
  random resized crop -> horizontal flip -> colour jitter (random order) -> grayscale -> blur
  -> solarize.

Resampling: the crop is resized with `jax.image.scale_and_translate` (linear, antialiased), i.e.
a crop box maps to the output grid with half-pixel centres; upsampling is plain bilinear and
downsampling widens the triangle filter, as PIL's antialiased resize in torchvision does. Unlike
crop-then-resize, taps just outside the box read the real neighbouring pixels rather than
clamped copies of the box edge; at the image border the weights are renormalised (edge clamp).
"""
import math

import jax
import jax.numpy as jnp
import ml_collections

# ITU-R 601-2 luma, as PIL's convert("L") and torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)
_CROP_ATTEMPTS = 10


def default_view_config() -> ml_collections.ConfigDict:
  """SimCLR's ImageNet view; BYOL's asymmetric pair sets blur_prob/solarize_prob per view."""
  return ml_collections.ConfigDict(dict(
      crop_scale=(0.08, 1.0),
      crop_ratio=(3 / 4, 4 / 3),
      flip_prob=0.5,
      jitter_prob=0.8,
      brightness=0.4,
      contrast=0.4,
      saturation=0.4,
      hue=0.1,
      grayscale_prob=0.2,
      blur_prob=0.5,
      blur_sigma=(0.1, 2.0),
      solarize_prob=0.0,
  ))


def to_float(images) -> jnp.ndarray:
  """uint8 [0, 255] or float [0, 1] -> float32 [0, 1]."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def normalize(images, mean, std) -> jnp.ndarray:
  """Per-channel standardisation of `to_float(images)`; `mean`/`std` broadcast over channels."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (to_float(images) - mean) / std


def center_view(images, *, out_size: int) -> jnp.ndarray:
  """Evaluation preprocessing: float [0, 1], resized (antialiased bilinear) if the size differs."""
  x = to_float(images)
  if x.shape[1:3] == (out_size, out_size):
    return x
  return jax.image.resize(x, (x.shape[0], out_size, out_size, x.shape[3]), 'linear')


# ---------------------------------------------------------------------------------------------
# Colour ops. They act on (..., H, W, 3) so tests can call them batched; the pipeline calls them
# on single images under vmap.


# Floor of the per-image standard deviation (in [0, 1] units): a nearly flat image is not blown up
# into amplified noise.
_MIN_IMAGE_STD = 0.05


def standardize_per_image(images) -> jnp.ndarray:
  """Each image's channels to zero mean, unit std over its pixels (std floored at 0.05).

  Invariant to a per-channel affine map of the image (brightness, contrast, colour cast) as long
  as the std stays above the floor.
  """
  x = to_float(images)
  mean = x.mean(axis=(-3, -2), keepdims=True)
  std = x.std(axis=(-3, -2), keepdims=True)
  return (x - mean) / jnp.maximum(std, _MIN_IMAGE_STD)


def standardize_keeping_mean(images) -> jnp.ndarray:
  """`standardize_per_image`'s 3 channels, then 3 constant planes holding each channel's mean
  ((mean - 0.5) / 0.25): the net sees the object against its background (what the standardised
  channels make salient) and still knows the colours (what standardising removes)."""
  x = to_float(images)
  mean = jnp.broadcast_to(x.mean(axis=(-3, -2), keepdims=True), x.shape)
  return jnp.concatenate([standardize_per_image(x), (mean - 0.5) / 0.25], axis=-1)


def model_input(images, input_norm: str) -> jnp.ndarray:
  """Images (uint8 or float in [0, 1]) -> network input, per `config.input_norm`."""
  if input_norm == "fixed":
    return normalize(images, 0.5, 0.5)  # [-1, 1]; the first BatchNorm absorbs the rest
  if input_norm == "per_image":
    return standardize_per_image(images)
  if input_norm == "per_image+mean":
    return standardize_keeping_mean(images)
  raise ValueError(f"input_norm={input_norm!r}: use 'fixed', 'per_image' or 'per_image+mean'")


def _luma(x) -> jnp.ndarray:
  # A weighted sum, not `x @ weights`: default-precision matmuls may run in TF32/bf16 on GPU/TPU.
  return _LUMA[0] * x[..., 0] + _LUMA[1] * x[..., 1] + _LUMA[2] * x[..., 2]


def grayscale(x) -> jnp.ndarray:
  """Luma replicated to 3 channels."""
  return jnp.repeat(_luma(x)[..., None], 3, axis=-1)


def adjust_brightness(x, factor) -> jnp.ndarray:
  return jnp.clip(x * factor, 0.0, 1.0)


def adjust_contrast(x, factor) -> jnp.ndarray:
  # torchvision blends towards the mean *luma* of the whole image, not a per-channel mean.
  mean = jnp.mean(_luma(x), axis=(-2, -1))[..., None, None, None]
  return jnp.clip(factor * x + (1.0 - factor) * mean, 0.0, 1.0)


def adjust_saturation(x, factor) -> jnp.ndarray:
  return jnp.clip(factor * x + (1.0 - factor) * grayscale(x), 0.0, 1.0)


def rgb_to_hsv(rgb) -> jnp.ndarray:
  """RGB in [0, 1] -> HSV with every channel in [0, 1] (hue as a fraction of a turn)."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  maxc = jnp.max(rgb, axis=-1)
  delta = maxc - jnp.min(rgb, axis=-1)
  # Guarded divisions: grey (delta == 0) and black (maxc == 0) pixels get hue = sat = 0, and no
  # NaN is ever computed, since jnp.where evaluates both of its branches.
  sat = delta / jnp.where(maxc > 0, maxc, 1.0)
  safe_delta = jnp.where(delta > 0, delta, 1.0)
  rc, gc, bc = ((maxc - c) / safe_delta for c in (r, g, b))
  # The sector comes from argmax, not `r == maxc`: once fused, XLA may recompute a channel with
  # different rounding, the equality then fails and the pixel lands in a wrong sector. Near ties
  # the neighbouring sectors' formulas agree, so an ulp-level argmax flip is harmless.
  hue = jnp.choose(jnp.argmax(rgb, axis=-1), [bc - gc, 2.0 + rc - bc, 4.0 + gc - rc], mode='clip')
  hue = jnp.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
  return jnp.stack([hue, sat, maxc], axis=-1)


def hsv_to_rgb(hsv) -> jnp.ndarray:
  """Inverse of `rgb_to_hsv`, in the branch-free form c = v - v*s*clip(min(k, 4-k), 0, 1)."""
  h, s, v = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
  k = (jnp.asarray([5.0, 3.0, 1.0], hsv.dtype) + 6.0 * h) % 6.0
  return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def adjust_hue(x, delta) -> jnp.ndarray:
  """Rotate hue by `delta` turns (torchvision's hue_factor)."""
  hsv = rgb_to_hsv(x)
  hsv = hsv.at[..., 0].set((hsv[..., 0] + delta) % 1.0)
  return jnp.clip(hsv_to_rgb(hsv), 0.0, 1.0)


def solarize(x, threshold=0.5) -> jnp.ndarray:
  return jnp.where(x >= threshold, 1.0 - x, x)


# ---------------------------------------------------------------------------------------------
# Per-example random ops on a single (H, W, 3) image, driven by uniforms drawn from its key.


# Every random number one example needs, by name and count. They come from a single draw per
# example: XLA:CPU takes most of a second to compile each vmapped threefry call, so one call
# instead of a dozen keeps jit (and the tests) fast; the numbers are iid either way.
_UNIFORMS = dict(area=_CROP_ATTEMPTS, ratio=_CROP_ATTEMPTS, y=1, x=1, flip=1, jitter=1,
                 order=4, factor=4, gray=1, blur=1, sigma=1, solarize=1)


def _draw_uniforms(key) -> dict:
  flat = jax.random.uniform(key, (sum(_UNIFORMS.values()),))
  u, start = {}, 0
  for name, n in _UNIFORMS.items():
    u[name] = flat[start:start + n] if n > 1 else flat[start]
    start += n
  return u


def _fallback_crop(h, w, ratio):
  """torchvision's centre crop when no attempt fits: the whole image, clamped to `ratio`."""
  in_ratio = w / h
  if in_ratio < ratio[0]:
    return round(w / ratio[0]), w
  if in_ratio > ratio[1]:
    return h, round(h * ratio[1])
  return h, w


def sample_crop(u, h: int, w: int, scale, ratio):
  """Inception crop box (y0, x0, crop_h, crop_w) in integer pixels, as float32 scalars.

  `u` holds uniforms in [0, 1) under the keys of `_UNIFORMS` ('area', 'ratio', 'y', 'x'). All
  attempts are drawn at once and the first that fits is kept, which has the same distribution as
  torchvision's rejection loop without a data-dependent trip count.
  """
  area = h * w * (scale[0] + (scale[1] - scale[0]) * u['area'])
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_lo + (log_hi - log_lo) * u['ratio'])
  cw = jnp.round(jnp.sqrt(area * aspect))
  ch = jnp.round(jnp.sqrt(area / aspect))
  fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
  first = jnp.argmax(fits)
  fb_h, fb_w = _fallback_crop(h, w, ratio)
  found = jnp.any(fits)
  ch = jnp.where(found, ch[first], fb_h)
  cw = jnp.where(found, cw[first], fb_w)
  # Uniform integer offsets in [0, size - crop]; the fallback is centred as in torchvision.
  y0 = jnp.where(found, jnp.floor(u['y'] * (h - ch + 1)), (h - fb_h) // 2)
  x0 = jnp.where(found, jnp.floor(u['x'] * (w - cw + 1)), (w - fb_w) // 2)
  return jnp.minimum(y0, h - ch), jnp.minimum(x0, w - cw), ch, cw


def resized_crop(image, box, out_size: int) -> jnp.ndarray:
  """Resample the box (y0, x0, ch, cw) of an (H, W, C) image to (out_size, out_size, C)."""
  y0, x0, ch, cw = box
  scale = jnp.stack([out_size / ch, out_size / cw])
  translation = -jnp.stack([y0, x0]) * scale
  return jax.image.scale_and_translate(
      image, (out_size, out_size, image.shape[-1]), (0, 1), scale, translation,
      method='linear', antialias=True)


def color_jitter(u, x, *, brightness, contrast, saturation, hue) -> jnp.ndarray:
  """torchvision ColorJitter: each enabled op once, in a per-example random order.

  `u` holds 4 uniforms under 'order' and 4 under 'factor'. Ops with zero strength are dropped
  statically (torchvision skips them too), which also saves the HSV round trip when hue is off.
  """
  ops, ranges = [], []
  for op, strength, lo, hi in (
      (adjust_brightness, brightness, max(0.0, 1 - brightness), 1 + brightness),
      (adjust_contrast, contrast, max(0.0, 1 - contrast), 1 + contrast),
      (adjust_saturation, saturation, max(0.0, 1 - saturation), 1 + saturation),
      (adjust_hue, hue, -hue, hue)):
    if strength > 0:
      ops.append(op)
      ranges.append((lo, hi))
  if not ops:
    return x
  lo, hi = jnp.asarray(ranges, jnp.float32).T
  factors = lo + (hi - lo) * u['factor'][:len(ops)]
  # argsort of iid uniforms is a uniformly random permutation.
  order = jnp.argsort(u['order'][:len(ops)])
  # Branch i applies op i with its own factor; under vmap the switch becomes a select over the
  # branches, i.e. each step evaluates every op. That is cheap next to the model and keeps the
  # order genuinely per example. A fori_loop rather than unrolled steps, so that the branches
  # are traced and compiled once rather than once per step.
  branches = [lambda x, f, op=op, i=i: op(x, f[i]) for i, op in enumerate(ops)]
  step = lambda i, x: jax.lax.switch(order[i], branches, x, factors)
  return jax.lax.fori_loop(0, len(ops), step, x)


def blur_kernel_size(out_size: int) -> int:
  """SimCLR's kernel: ~10% of the image side, odd, at least 3 (23 for 224)."""
  return max(3, 2 * (out_size // 20) + 1)


def gaussian_blur(x, sigma, kernel_size: int) -> jnp.ndarray:
  """Separable Gaussian blur of an (H, W, C) image with reflect padding (as torchvision).

  Reflect padding keeps constant images constant, unlike SimCLR-TF's zero padding which
  darkens the border. The taps loop is over the static kernel size, not over examples.
  """
  radius = kernel_size // 2
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  weights = jnp.exp(-0.5 * (taps / sigma) ** 2)
  weights = weights / jnp.sum(weights)

  def blur_axis(x, axis):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    xp = jnp.pad(x, pad, mode='reflect')
    n = x.shape[axis]
    return sum(weights[j] * jax.lax.slice_in_dim(xp, j, j + n, axis=axis)
               for j in range(kernel_size))

  return blur_axis(blur_axis(x, 0), 1)


def _augment_one(key, image, *, out_size: int, cfg) -> jnp.ndarray:
  """The full SimCLR/BYOL view of one (H, W, 3) float image."""
  u = _draw_uniforms(key)
  h, w = image.shape[0], image.shape[1]
  box = sample_crop(u, h, w, tuple(cfg.crop_scale), tuple(cfg.crop_ratio))
  x = jnp.clip(resized_crop(image, box, out_size), 0.0, 1.0)
  # Ops whose probability is 0 are skipped statically: no wasted compute, same output.
  if cfg.flip_prob > 0:
    x = jnp.where(u['flip'] < cfg.flip_prob, x[:, ::-1], x)
  if cfg.jitter_prob > 0:
    jittered = color_jitter(u, x, brightness=cfg.brightness, contrast=cfg.contrast,
                            saturation=cfg.saturation, hue=cfg.hue)
    x = jnp.where(u['jitter'] < cfg.jitter_prob, jittered, x)
  if cfg.grayscale_prob > 0:
    x = jnp.where(u['gray'] < cfg.grayscale_prob, grayscale(x), x)
  if cfg.blur_prob > 0:
    lo, hi = cfg.blur_sigma
    blurred = gaussian_blur(x, lo + (hi - lo) * u['sigma'], blur_kernel_size(out_size))
    x = jnp.where(u['blur'] < cfg.blur_prob, blurred, x)
  if cfg.solarize_prob > 0:
    x = jnp.where(u['solarize'] < cfg.solarize_prob, solarize(x), x)
  # The luma weights and blur taps sum to 1 only up to rounding: keep the [0, 1] promise exact.
  return jnp.clip(x, 0.0, 1.0)


def simclr_view(rng, images, *, out_size: int, cfg) -> jnp.ndarray:
  """One augmented view of a (B, H, W, 3) batch -> (B, out_size, out_size, 3) float32 in [0, 1]."""
  x = to_float(images)
  keys = jax.random.split(rng, x.shape[0])
  return jax.vmap(lambda k, im: _augment_one(k, im, out_size=out_size, cfg=cfg))(keys, x)


def simclr_views(rng, images, *, out_size: int, cfg_list) -> list[jnp.ndarray]:
  """One view per config, each from an independent key (e.g. BYOL's asymmetric pair)."""
  keys = jax.random.split(rng, len(cfg_list))
  return [simclr_view(k, images, out_size=out_size, cfg=cfg) for k, cfg in zip(keys, cfg_list)]


def multicrop_views(rng, images, *, global_size: int, local_size: int, global_cfgs, local_cfg,
                    num_local: int) -> tuple[list[jnp.ndarray], list[jnp.ndarray]]:
  """Multi-crop (SwAV, DINO): one view per config in `global_cfgs` at `global_size`, plus
  `num_local` small views at `local_size` from `local_cfg` (whose crop_scale is typically
  (0.05, 0.4)). Returns (global views, local views); every view has an independent key.

  The local views share a config, so they are computed by one `vmap` over their keys: the traced
  (and compiled) pipeline is the same size whatever `num_local` is.
  """
  keys = jax.random.split(rng, len(global_cfgs) + num_local)
  global_keys, local_keys = keys[:len(global_cfgs)], keys[len(global_cfgs):]
  global_views = [simclr_view(k, images, out_size=global_size, cfg=cfg)
                  for k, cfg in zip(global_keys, global_cfgs)]
  if not num_local:
    return global_views, []
  local = jax.vmap(lambda k: simclr_view(k, images, out_size=local_size, cfg=local_cfg))(local_keys)
  return global_views, list(local)


def video_view(rng, videos, *, out_size: int, cfg) -> jnp.ndarray:
  """One augmented view of a (B, T, H, W, 3) batch of clips -> (B, T, out_size, out_size, 3)
  float32 in [0, 1].

  All frames of a clip share its key, hence one crop box, flip, colour jitter (and grayscale,
  blur, solarize if enabled), as video SSL (MMV, CVRL) augments clips: independent per-frame
  crops would add motion that is not in the video. Brightness/contrast still act per frame
  (contrast blends towards each frame's own mean luma, as torchvision on a single image).
  """
  x = to_float(videos)
  keys = jax.random.split(rng, x.shape[0])

  def clip(key, frames):
    return jax.vmap(lambda frame: _augment_one(key, frame, out_size=out_size, cfg=cfg))(frames)

  return jax.vmap(clip)(keys, x)
