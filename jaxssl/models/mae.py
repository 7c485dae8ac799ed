"""Masked autoencoders: MAE (He et al., CVPR 2022) and VideoMAE (Tong et al., NeurIPS 2022).

The asymmetric design of both papers: a ViT encoder sees only the visible patches; a light
decoder gets the encoded visible tokens plus a shared learned mask token at every masked
position, in the original order, and predicts every patch's pixels (the loss reads the masked
ones only, `jaxssl.losses.mae`).

Patch layout, as the reference code: images (N, H, W, C) -> (N, h * w, p * p * C) with tokens in
row-major (patch row, patch column) order and each patch flattened as (pixel row, pixel column,
channel); clips (N, T, H, W, C) -> (N, t * h * w, tubelet * p * p * C), tokens in (t, y, x)
order, each tubelet flattened as (frame, pixel row, pixel column, channel), as VideoMAE's
`b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c`. This is the order of the encoder's
convolutional patch embedding reshaped, so a token index means the same patch everywhere.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl.models.vit import Encoder, ViT, _dense, posemb_sincos


def patchify(x: jax.Array, patch: int, tubelet: int = 1) -> jax.Array:
  """Images (N, H, W, C) or clips (N, T, H, W, C) -> patches (N, L, P) in MAE's order."""
  if x.ndim == 4:
    n, h, w, c = x.shape
    x = x.reshape(n, h // patch, patch, w // patch, patch, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, (h // patch) * (w // patch), -1)
  n, t, h, w, c = x.shape
  x = x.reshape(n, t // tubelet, tubelet, h // patch, patch, w // patch, patch, c)
  x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(n, (t // tubelet) * (h // patch) * (w // patch), -1)


def unpatchify(patches: jax.Array, grid: tuple[int, ...], patch: int, tubelet: int = 1
               ) -> jax.Array:
  """Inverse of `patchify` for a token grid (h, w) or (t, h, w)."""
  n = patches.shape[0]
  if len(grid) == 2:
    h, w = grid
    x = patches.reshape(n, h, w, patch, patch, -1).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * patch, w * patch, -1)
  t, h, w = grid
  x = patches.reshape(n, t, h, w, tubelet, patch, patch, -1)
  x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(n, t * tubelet, h * patch, w * patch, -1)


def token_grid(shape: tuple[int, ...], patch: int, tubelet: int = 1) -> tuple[int, ...]:
  """The (h, w) or (t, h, w) token grid of an image (H, W, C) or clip (T, H, W, C) shape."""
  if len(shape) == 3:
    return shape[0] // patch, shape[1] // patch
  return shape[0] // tubelet, shape[1] // patch, shape[2] // patch


def num_visible(length: int, mask_ratio: float) -> int:
  """MAE's `len_keep = int(L * (1 - mask_ratio))`, at least one token."""
  if not 0.0 <= mask_ratio < 1.0:
    raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
  return max(int(length * (1 - mask_ratio)), 1)


def random_masking(rng: jax.Array, batch: int, length: int, mask_ratio: float):
  """MAE's per-sample random masking by argsort of uniform noise (the lowest are kept).

  Returns (ids_keep (N, K) int32, mask (N, L) float32 with 1 = masked, ids_restore (N, L)):
  exactly K = int(L * (1 - mask_ratio)) visible tokens per sample, and
  `take_along_axis(concat([kept, masked]), ids_restore)` puts tokens back in grid order.
  """
  keep = num_visible(length, mask_ratio)
  noise = jax.random.uniform(rng, (batch, length))
  ids_shuffle = jnp.argsort(noise, axis=1).astype(jnp.int32)
  ids_restore = jnp.argsort(ids_shuffle, axis=1).astype(jnp.int32)
  mask = (ids_restore >= keep).astype(jnp.float32)  # Token j is masked iff shuffled past K.
  return ids_shuffle[:, :keep], mask, ids_restore


def tube_masking(rng: jax.Array, batch: int, grid: tuple[int, int, int], mask_ratio: float):
  """VideoMAE's tube masking: one random mask of the (h, w) positions per sample, the same at
  every time step, so a masked patch cannot be copied from its neighbour in time.

  Same outputs as `random_masking` over the L = t * h * w tokens in (t, y, x) order: each
  frame keeps int(h * w * (1 - mask_ratio)) positions.
  """
  t, h, w = grid
  _, frame_mask, _ = random_masking(rng, batch, h * w, mask_ratio)
  mask = jnp.tile(frame_mask, (1, t))  # (N, t * h * w): the frame mask repeated over time.
  # Visible tokens first (in grid order), then the masked ones: a stable sort of the mask.
  ids_shuffle = jnp.argsort(mask, axis=1, stable=True).astype(jnp.int32)
  ids_restore = jnp.argsort(ids_shuffle, axis=1).astype(jnp.int32)
  return ids_shuffle[:, :t * num_visible(h * w, mask_ratio)], mask, ids_restore


class MAEDecoder(nn.Module):
  """MAE's decoder: project the encoded tokens, fill in mask tokens, unshuffle, add fixed
  sin-cos positions, `depth` pre-norm blocks, LayerNorm, and a linear map to patch pixels."""
  width: int = 512
  depth: int = 8
  num_heads: int = 16
  patch_dim: int = 768
  dtype: Any = jnp.float32
  remat: bool = False
  scan: bool = False

  @nn.compact
  def __call__(self, tokens, ids_restore, grid, has_cls: bool, train: bool):
    """tokens (N, [1 +] K, We) from the encoder -> predicted patches (N, L, patch_dim)."""
    x = _dense(self.width, ("embed", "mlp"), self.dtype, "embed")(tokens)
    cls, x = (x[:, :1], x[:, 1:]) if has_cls else (None, x)
    n, keep, c = x.shape
    length = ids_restore.shape[1]
    mask_token = self.param(
        "mask_token", nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                   (None, None, "mlp")), (1, 1, c), jnp.float32)
    x = jnp.concatenate(
        [x, jnp.broadcast_to(mask_token.astype(x.dtype), (n, length - keep, c))], axis=1)
    x = jnp.take_along_axis(x, ids_restore[..., None], axis=1)
    x = x + posemb_sincos(tuple(grid), c).astype(x.dtype)
    if has_cls:  # The class token passes through with a zero position, as in MAE.
      x = jnp.concatenate([cls, x], axis=1)
    x = Encoder(self.depth, self.num_heads, 4 * self.width, 0.0, self.dtype, self.remat,
                self.scan, name="decoder")(x, not train)
    x = _dense(self.patch_dim, ("mlp", "embed"), self.dtype, "pred")(x)
    return x[:, 1:] if has_cls else x


class MaskedAutoencoder(nn.Module):
  """ViT encoder on the visible tokens + MAE decoder. `features` is the encoder without masking
  (the class token, or the mean token for pool="gap"), for probes and fine-tuning."""
  encoder: ViT
  decoder: MAEDecoder

  def __call__(self, x, ids_keep, ids_restore, train: bool):
    """Model inputs x (images or clips) -> predicted patches (N, L, P) for every token."""
    _, tokens = self.encoder(x, train=train, return_tokens=True, ids_keep=ids_keep)
    grid = token_grid(x.shape[1:], self.encoder.patch_size, self.encoder.tubelet)
    return self.decoder(tokens, ids_restore, grid, self.encoder.pool == "cls", train)

  def features(self, x):
    return self.encoder(x, train=False)
