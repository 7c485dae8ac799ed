"""ResNet v1.5 encoders (He et al. 2016; torchvision placement of the stride).

The layer layout, padding and initialisation follow torchvision so that parameter
counts and feature shapes match the numbers quoted in the SSL literature
(ResNet-18: 11.18M, ResNet-50: 23.51M without the classifier).

With `num_frames` = T > 0 the same network is a TSM-ResNet (Lin et al., "TSM:
Temporal Shift Module for Efficient Video Understanding", ICCV 2019), a video
backbone of MMV: the batch holds the frames of clips, (B * T, H, W, C)
clip-major, and every residual branch starts by shifting channels along time
(`temporal_shift`), which mixes neighbouring frames at no cost in parameters
or FLOPs.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Stage depths and whether the stages use bottleneck blocks. Depth 10 is not a
# standard torchvision model: it is a one-block-per-stage variant for CPU runs.
STAGES = {
    10: ((1, 1, 1, 1), False),
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
}

# He-normal in fan-out mode, as torchvision initialises its convolutions.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def feature_dim(depth: int, width: int) -> int:
  """Channels after the last stage: 8x the stem width, 4x more for bottlenecks."""
  _, bottleneck = STAGES[depth]
  return width * 8 * (4 if bottleneck else 1)


def temporal_shift(x, num_frames: int, fold_div: int = 8):
  """TSM's shift of (B * T, H, W, C) clip-major frames.

  Channels [0, C/8) of frame t take frame t + 1's values, channels [C/8, C/4)
  take frame t - 1's, the rest stay; zeros past the ends of each clip (the
  reference `shift(..., fold_div=8)`).
  """
  bt, h, w, c = x.shape
  fold = c // fold_div
  x = x.reshape(bt // num_frames, num_frames, h, w, c)
  time_pad = lambda y, before, after: jnp.pad(
      y, ((0, 0), (before, after), (0, 0), (0, 0), (0, 0)))
  out = jnp.concatenate([time_pad(x[:, 1:, ..., :fold], 0, 1),
                         time_pad(x[:, :-1, ..., fold:2 * fold], 1, 0),
                         x[..., 2 * fold:]], axis=-1)
  return out.reshape(bt, h, w, c)


_CONV_AXES = ("conv_h", "conv_w", "conv_in", "conv_out")


def _conv(features: int, kernel: int, strides: int, dtype: Any, name: str) -> nn.Conv:
  # Symmetric `kernel // 2` padding (not "SAME") reproduces torchvision's output
  # grid for strided convs; a bias is redundant before BatchNorm.
  return nn.Conv(
      features, (kernel, kernel), strides=(strides, strides),
      padding=[(kernel // 2, kernel // 2)] * 2, use_bias=False, dtype=dtype,
      param_dtype=jnp.float32, kernel_init=nn.with_logical_partitioning(_conv_init, _CONV_AXES),
      name=name)


class FrameStackConv(nn.Module):
  """A 3D conv over (T, H, W) of (B * T, H, W, C) clip-major frames, "same" zero padding in
  time (output frame j is centred on input frame j * time_strides, as a strided nn.Conv's),
  spatial padding as `_conv`'s; the kernel is (time, k, k, C, features), as nn.Conv's 3D
  kernel. Returns (B * T / time_strides, H', W', features).

  Computed as one 2D conv over each frame stacked with its `time - 1` neighbours along the
  channels (the kernel reshaped to (k, k, time * C, features)): the same sums, but XLA:CPU's
  3D convolutions run as naive loops (a 3-frame stem's gradient took 0.85 s of the CPU MMV
  step's ~1.4 s) while 2D ones go to its fast paths (YNNPACK with `cpu_ynnpack`).
  """
  features: int
  kernel: int
  strides: int
  time: int
  num_frames: int
  dtype: Any = jnp.float32
  time_strides: int = 1

  @nn.compact
  def __call__(self, x):
    bt, h, w, c = x.shape
    k = self.kernel
    init = nn.with_logical_partitioning(_conv_init, ("conv_t",) + _CONV_AXES)
    weight = self.param("kernel", init, (self.time, k, k, c, self.features), jnp.float32)
    clips = x.reshape(bt // self.num_frames, self.num_frames, h, w, c)
    before, after = self.time // 2, (self.time - 1) // 2
    padded = jnp.pad(clips, ((0, 0), (before, after), (0, 0), (0, 0), (0, 0)))
    # Channel i * C + c of frame t is channel c of frame t + i - before: kernel row i's input.
    # Only the output frames' stacks are built, so a time stride divides the conv's cost.
    stacked = jnp.concatenate([padded[:, i:i + self.num_frames:self.time_strides]
                               for i in range(self.time)], -1)
    stacked = stacked.reshape(-1, h, w, self.time * c).astype(self.dtype)
    weight = jnp.transpose(weight, (1, 2, 0, 3, 4)).reshape(k, k, self.time * c, self.features)
    return jax.lax.conv_general_dilated(
        stacked, weight.astype(self.dtype), (self.strides, self.strides), [(k // 2, k // 2)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _batch_norm(train: bool, dtype: Any, name: str,
                zero_scale: bool = False) -> nn.BatchNorm:
  # No `axis_name`: under jit the batch mean over a sharded batch is already a
  # global reduction, so statistics always cover the whole global batch.
  scale_init = nn.initializers.zeros if zero_scale else nn.initializers.ones
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5,
      dtype=dtype, param_dtype=jnp.float32,
      scale_init=nn.with_logical_partitioning(scale_init, ("norm",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
      name=name)


def _branch_input(x, num_frames: int):
  # TSM's "residual shift": only the residual branch sees shifted channels, the
  # shortcut keeps each frame's own features (shifting both, "in-place", loses
  # spatial information).
  return temporal_shift(x, num_frames) if num_frames else x


class BasicBlock(nn.Module):
  """Two 3x3 convs; used by ResNet-10/18/34."""
  features: int
  strides: int = 1
  dtype: Any = jnp.float32
  num_frames: int = 0
  zero_init_residual: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(_conv, dtype=self.dtype)
    bn = functools.partial(_batch_norm, train, self.dtype)
    y = nn.relu(bn("bn1")(conv(self.features, 3, self.strides, name="conv1")(
        _branch_input(x, self.num_frames))))
    # Zero-initialised last scale makes every block start as the identity, which
    # is what lets large-batch training use a linear LR warm-up (Goyal et al.).
    y = bn("bn2", zero_scale=self.zero_init_residual)(
        conv(self.features, 3, 1, name="conv2")(y))
    if x.shape[-1] != self.features or self.strides != 1:
      x = bn("proj_bn")(conv(self.features, 1, self.strides, name="proj_conv")(x))
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  """1x1 reduce, strided 3x3, 1x1 expand (x4); used by ResNet-50."""
  features: int
  strides: int = 1
  dtype: Any = jnp.float32
  num_frames: int = 0
  zero_init_residual: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(_conv, dtype=self.dtype)
    bn = functools.partial(_batch_norm, train, self.dtype)
    out = self.features * 4
    y = nn.relu(bn("bn1")(conv(self.features, 1, 1, name="conv1")(
        _branch_input(x, self.num_frames))))
    # v1.5: the stride sits on the 3x3 conv, not the first 1x1 (v1), which keeps
    # information from 3/4 of the positions that a strided 1x1 would skip.
    y = nn.relu(bn("bn2")(conv(self.features, 3, self.strides, name="conv2")(y)))
    y = bn("bn3", zero_scale=self.zero_init_residual)(conv(out, 1, 1, name="conv3")(y))
    if x.shape[-1] != out or self.strides != 1:
      x = bn("proj_bn")(conv(out, 1, self.strides, name="proj_conv")(x))
    return nn.relu(x + y)


class ResNet(nn.Module):
  """ResNet trunk returning globally average-pooled features of shape (B, D).

  Attributes:
    depth: 10, 18, 34 or 50.
    width: channels of the stem and first stage; stage i has width * 2**i.
    stem: "cifar" (3x3 stride-1 conv, no pooling; for 32x32 inputs, as in the
      SimCLR CIFAR experiments), "small" (3x3 stride-2 conv, no pooling: half the resolution
      of "cifar" at a quarter of its cost, for CPU runs on small images) or "imagenet"
      (7x7 stride-2 conv + max-pool).
    dtype: compute dtype; parameters and BatchNorm statistics stay float32.
    num_frames: 0 for images; T > 0 makes it a TSM-ResNet over (B * T, H, W, C)
      clip-major frames (module docstring), returning per-frame features.
    zero_init_residual: start each block's last BatchNorm scale at 0 (Goyal et al.; the
      torchvision option). Right for SGD/LARS at large learning rates; under Adam a scale
      moves ~lr per step, so short Adam runs learn faster with it off (measured on avshapes
      frames, 150 supervised steps: 0.16 -> 0.26 held-out class accuracy).
    stem_frames: clips only, with the "cifar" or "small" stem: > 1 makes the stem a 3D conv
      spanning that many neighbouring frames (zero-padded at the clip's ends), so that motion
      is seen from the first layer; 1 is TSM's per-frame stem.
    stem_time_strides: with stem_frames > 1, the 3D stem's stride in time (I3D's and S3D's
      stems stride 2): the blocks then see num_frames / stem_time_strides frames per clip, at
      that fraction of the cost, while the stem still sees every frame when stem_frames >
      stem_time_strides.
  """
  depth: int = 18
  width: int = 64
  stem: str = "cifar"
  dtype: Any = jnp.float32
  num_frames: int = 0
  zero_init_residual: bool = True
  stem_frames: int = 1
  stem_time_strides: int = 1

  def __post_init__(self):
    # Validate at construction so a bad config fails before any tracing.
    if self.depth not in STAGES:
      raise ValueError(f"depth must be one of {sorted(STAGES)}, got {self.depth}")
    if self.stem not in ("cifar", "small", "imagenet"):
      raise ValueError(f"stem must be 'cifar', 'small' or 'imagenet', got {self.stem!r}")
    if self.stem_frames > 1 and (not self.num_frames or self.stem == "imagenet"):
      raise ValueError(f"stem_frames={self.stem_frames} needs clips (num_frames > 0) and the "
                       f"'cifar' or 'small' stem, got num_frames={self.num_frames}, "
                       f"stem={self.stem!r}")
    if self.stem_time_strides > 1 and (self.stem_frames == 1 or
                                       self.num_frames % self.stem_time_strides):
      raise ValueError(f"stem_time_strides={self.stem_time_strides} needs the 3D stem "
                       f"(stem_frames > 1) and num_frames divisible by it, got stem_frames="
                       f"{self.stem_frames}, num_frames={self.num_frames}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool):
    stage_sizes, bottleneck = STAGES[self.depth]
    if self.stem in ("cifar", "small"):
      strides = 1 if self.stem == "cifar" else 2
      if self.stem_frames > 1:  # A 3D conv over each clip's frames.
        x = FrameStackConv(self.width, 3, strides, self.stem_frames, self.num_frames, self.dtype,
                           self.stem_time_strides, name="stem_conv")(x)
      else:
        x = _conv(self.width, 3, strides, self.dtype, name="stem_conv")(x)
      x = nn.relu(_batch_norm(train, self.dtype, name="stem_bn")(x))
    else:
      x = _conv(self.width, 7, 2, self.dtype, name="stem_conv")(x)
      x = nn.relu(_batch_norm(train, self.dtype, name="stem_bn")(x))
      # max_pool pads with -inf, matching torchvision's MaxPool2d(3, 2, 1).
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    block_cls = Bottleneck if bottleneck else BasicBlock
    num_frames = self.num_frames // self.stem_time_strides
    for i, num_blocks in enumerate(stage_sizes):
      for j in range(num_blocks):
        # The first stage keeps the resolution: the stem already downsampled.
        strides = 2 if i > 0 and j == 0 else 1
        x = block_cls(self.width * 2**i, strides, self.dtype, num_frames,
                      self.zero_init_residual, name=f"stage{i + 1}_block{j + 1}")(x, train)
    return jnp.mean(x, axis=(1, 2))

