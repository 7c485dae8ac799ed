"""Vision Transformer encoder (Dosovitskiy et al. 2021), pre-norm, big_vision style.

Besides the pooled features, the encoder can return every output token and can
run on a subset of the patches (`ids_keep`), which is what MAE's encoder needs;
`posemb_sincos` and `Encoder` are public so that an MAE decoder can reuse them.
Clips (B, T, H, W, C) are cut into tubelets of `tubelet` frames x patch x patch
(ViViT's tubelet embedding, VideoMAE's 2 x 16 x 16), tokens in (t, y, x) order.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.models import attention, layer_norm

# (width, depth, num_heads). "mu" is a 4-block model for CPU smoke runs; the
# others are the standard DeiT/ViT sizes.
VARIANTS = {
    "mu": (96, 4, 3),
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}


def vit_config(variant: str) -> dict:
  """ViT constructor kwargs for a name like "base" or "tiny/4" (patch size 4).

  Without a "/patch" suffix the patch size is 16.
  """
  name, _, patch = variant.partition("/")
  if name not in VARIANTS:
    raise ValueError(
        f"variant must be one of {sorted(VARIANTS)} with an optional /patch "
        f"suffix, got {variant!r}")
  if patch and not patch.isdigit():
    raise ValueError(f"variant patch size must be an integer, got {variant!r}")
  width, depth, num_heads = VARIANTS[name]
  return dict(width=width, depth=depth, num_heads=num_heads,
              patch_size=int(patch) if patch else 16)


def posemb_sincos_2d(h: int, w: int, width: int,
                     temperature: float = 10_000.) -> jax.Array:
  """Fixed float32 2D sin-cos position embeddings of shape (1, h * w, width).

  A quarter of the channels each hold sin(x), cos(x), sin(y), cos(y) at
  geometric frequencies 1 / temperature**(i / (width/4)), as in MAE; tokens are
  in row-major (y, x) order, the order of a reshaped (B, h, w, C) patch grid.
  """
  if width % 4:
    raise ValueError(f"width must be divisible by 4 for 2D sincos, got {width}")
  y, x = np.mgrid[:h, :w]
  omega = 1. / temperature**(np.arange(width // 4) / (width // 4))
  y = np.einsum("m,d->md", y.reshape(-1), omega)
  x = np.einsum("m,d->md", x.reshape(-1), omega)
  pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return jnp.asarray(pe[None], jnp.float32)


def posemb_sincos(grid: tuple[int, ...], width: int) -> jax.Array:
  """2D sin-cos embeddings for a (h, w) grid, 3D ones for a (t, h, w) grid of tubelets.

  The 3D form extends MAE's 2D one: a third of the channels each encode t, y
  and x (sin and cos at width/6 geometric frequencies); row-major token order.
  """
  if len(grid) == 2:
    return posemb_sincos_2d(*grid, width)
  if width % 6:
    raise ValueError(f"width must be divisible by 6 for 3D sincos, got {width}")
  t, y, x = np.mgrid[:grid[0], :grid[1], :grid[2]]
  omega = 1. / 10_000.**(np.arange(width // 6) / (width // 6))
  parts = []
  for pos in (t, y, x):
    angles = np.einsum("m,d->md", pos.reshape(-1), omega)
    parts += [np.sin(angles), np.cos(angles)]
  return jnp.asarray(np.concatenate(parts, axis=1)[None], jnp.float32)


def _dense(features: int, names: tuple[str, str], dtype: Any,
           name: str) -> nn.Dense:
  # Xavier-uniform kernels and near-zero biases, as in big_vision's ViT.
  return nn.Dense(
      features, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=nn.with_logical_partitioning(
          nn.initializers.xavier_uniform(), names),
      bias_init=nn.with_logical_partitioning(
          nn.initializers.normal(stddev=1e-6), names[-1:]),
      name=name)


def _layer_norm(dtype: Any, name: str) -> layer_norm.LayerNorm:
  # flax's nn.LayerNorm(epsilon=1e-6) and its parameters, with a leaner backward pass.
  return layer_norm.LayerNorm(epsilon=1e-6, dtype=dtype, name=name)


class MlpBlock(nn.Module):
  """Dense -> GELU -> Dense, back to the input width."""
  mlp_dim: int
  dropout: float = 0.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool):
    width = x.shape[-1]
    x = nn.gelu(_dense(self.mlp_dim, ("embed", "mlp"), self.dtype, "fc1")(x))
    x = nn.Dropout(self.dropout)(x, deterministic)
    return _dense(width, ("mlp", "embed"), self.dtype, "fc2")(x)


class Encoder1DBlock(nn.Module):
  """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x))."""
  num_heads: int
  mlp_dim: int
  dropout: float = 0.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool):
    y = _layer_norm(self.dtype, "ln1")(x)
    # flax's MultiHeadDotProductAttention's parameters; XLA's fused attention on accelerators,
    # a cache-sized loop on CPU.
    y = attention.SelfAttention(self.num_heads, self.dtype, name="attn")(y)
    x = x + nn.Dropout(self.dropout)(y, deterministic)
    y = _layer_norm(self.dtype, "ln2")(x)
    y = MlpBlock(self.mlp_dim, self.dropout, self.dtype, name="mlp")(
        y, deterministic)
    return x + nn.Dropout(self.dropout)(y, deterministic)


class _ScannedBlock(nn.Module):
  """One block as `nn.scan` wants it: carry in, (carry, nothing) out; `deterministic` is an
  attribute so that it stays a Python bool inside the scan."""
  num_heads: int
  mlp_dim: int
  dropout: float
  dtype: Any
  remat: bool
  deterministic: bool

  @nn.compact
  def __call__(self, x, _):
    block_cls = (nn.remat(Encoder1DBlock, static_argnums=(2,)) if self.remat
                 else Encoder1DBlock)
    return block_cls(self.num_heads, self.mlp_dim, self.dropout, self.dtype,
                     name="block")(x, self.deterministic), None


class Encoder(nn.Module):
  """A stack of `depth` blocks followed by a final LayerNorm.

  scan: one block body under `nn.scan` over stacked parameters (leading axis
  "layers", never sharded) instead of `depth` unrolled copies: the step's
  program, and so its compile time, no longer grows with depth. The parameter
  tree differs (encoder/blocks/block/... of shape (depth, ...) instead of
  encoder/block{i}/...), so checkpoints do not carry over between the two.
  """
  depth: int
  num_heads: int
  mlp_dim: int
  dropout: float = 0.
  dtype: Any = jnp.float32
  remat: bool = False
  scan: bool = False

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if self.scan:
      blocks = nn.scan(
          _ScannedBlock, variable_axes={"params": 0},
          split_rngs={"params": True, "dropout": True}, length=self.depth,
          metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = blocks(self.num_heads, self.mlp_dim, self.dropout, self.dtype,
                    self.remat, deterministic, name="blocks")(x, None)
      return _layer_norm(self.dtype, "encoder_norm")(x)
    block_cls = Encoder1DBlock
    if self.remat:
      # Recompute activations in the backward pass: trades ~1/3 more FLOPs for
      # O(depth) less activation memory. `deterministic` must stay static.
      block_cls = nn.remat(Encoder1DBlock, static_argnums=(2,))
    for i in range(self.depth):
      x = block_cls(self.num_heads, self.mlp_dim, self.dropout, self.dtype,
                    name=f"block{i}")(x, deterministic)
    return _layer_norm(self.dtype, "encoder_norm")(x)


class ViT(nn.Module):
  """ViT encoder returning pooled features of shape (B, width).

  Attributes:
    patch_size: side of the square patches; image sides must be multiples.
    width, depth, num_heads: transformer size (see `vit_config` for presets).
    mlp_dim: hidden width of the MLPs; None means 4 * width.
    pool: "cls" (prepend a learned class token and return its output) or "gap"
      (no class token; mean of the output patch tokens).
    posemb: "sincos2d" (fixed, as in MAE/big_vision; 3D for clips) or "learn".
    dropout: dropout rate after the embeddings, attention and MLPs.
    dtype: compute dtype; parameters stay float32.
    remat: rematerialise each block (see `Encoder`).
    scan_layers: run the blocks under `nn.scan` (see `Encoder`).
    tubelet: frames per token for clips (B, T, H, W, C); images ignore it.
  """
  patch_size: int = 16
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int | None = None
  pool: str = "cls"
  posemb: str = "sincos2d"
  dropout: float = 0.
  dtype: Any = jnp.float32
  remat: bool = False
  tubelet: int = 2
  scan_layers: bool = False

  def __post_init__(self):
    # Validate at construction so a bad config fails before any tracing.
    if self.pool not in ("cls", "gap"):
      raise ValueError(f"pool must be 'cls' or 'gap', got {self.pool!r}")
    if self.posemb not in ("sincos2d", "learn"):
      raise ValueError(
          f"posemb must be 'sincos2d' or 'learn', got {self.posemb!r}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool, return_tokens: bool = False,
               ids_keep: jax.Array | None = None):
    """Encodes images x of shape (B, H, W, C), or clips (B, T, H, W, C).

    Args:
      x: float images or clips, already normalised.
      train: enables dropout (needs a "dropout" rng when dropout > 0).
      return_tokens: also return all output tokens, (B, 1 + N, width) with the
        class token first for pool="cls", else (B, N, width).
      ids_keep: optional (B, K) int indices into the row-major token grid; only
        those patches (with their position embeddings) enter the transformer,
        as MAE's encoder does with its visible patches.

    Returns:
      The pooled features (B, width), or (pooled, tokens) if return_tokens.
    """
    p, video = self.patch_size, x.ndim == 5
    if x.shape[-3] % p or x.shape[-2] % p:
      raise ValueError(f"image size {x.shape[-3:-1]} is not a multiple of "
                       f"patch_size {p}")
    if video and x.shape[1] % self.tubelet:
      raise ValueError(f"{x.shape[1]} frames are not a multiple of tubelet "
                       f"{self.tubelet}")
    kernel = (self.tubelet, p, p) if video else (p, p)
    x = nn.Conv(
        self.width, kernel, strides=kernel, padding="VALID",
        dtype=self.dtype, param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.lecun_normal(),
            ("conv_t",) * video + ("conv_h", "conv_w", "conv_in", "conv_out")),
        bias_init=nn.with_logical_partitioning(
            nn.initializers.zeros, ("conv_out",)),
        name="embedding")(x)
    b, *grid, c = x.shape
    x = x.reshape(b, -1, c)

    if self.posemb == "sincos2d":
      pos = posemb_sincos(tuple(grid), c)
    else:
      pos = self.param(
          "pos_embedding",
          nn.with_logical_partitioning(
              nn.initializers.normal(stddev=1 / np.sqrt(c)),
              (None, None, "embed")),
          (1, x.shape[1], c), jnp.float32)
    # Cast so float32 embeddings do not promote a bfloat16 residual stream.
    x = x + pos.astype(x.dtype)
    if ids_keep is not None:
      x = jnp.take_along_axis(x, ids_keep[..., None], axis=1)

    if self.pool == "cls":
      # No position embedding for the class token: it is a learned parameter
      # already, so a learned offset would be redundant (big_vision, MAE).
      cls = self.param(
          "cls",
          nn.with_logical_partitioning(
              nn.initializers.zeros, (None, None, "embed")),
          (1, 1, c), jnp.float32)
      x = jnp.concatenate(
          [jnp.broadcast_to(cls.astype(x.dtype), (b, 1, c)), x], axis=1)

    x = nn.Dropout(self.dropout)(x, not train)
    x = Encoder(self.depth, self.num_heads, self.mlp_dim or 4 * self.width,
                self.dropout, self.dtype, self.remat, self.scan_layers,
                name="encoder")(
                    x, not train)
    pooled = x[:, 0] if self.pool == "cls" else jnp.mean(x, axis=1)
    return (pooled, x) if return_tokens else pooled
