"""Video encoder: a TSM-ResNet over clips (Lin et al., ICCV 2019), as MMV's TSM-ResNet50.

MMV (Alayrac et al., NeurIPS 2020) trains S3D-G and TSM-ResNet50(x2) video backbones; TSM is
the one that is a plain 2D ResNet plus a parameter-free temporal shift, so it shares
`jaxssl.models.resnet` (stems, blocks, initialisation, logical axis names for FSDP) with the
image encoders and costs exactly a per-frame ResNet. Optionally (`stem_frames` > 1) the stem
is a 3D conv over neighbouring frames, as the (2+1)D/S3D stems, for CPU models too shallow to
build motion from TSM's shifts alone.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxssl.models.resnet import ResNet


class VideoEncoder(nn.Module):
  """(B, T, H, W, C) float clips -> (B, D) features: a TSM-ResNet on the B * T frames, average
  pooled over space (inside the ResNet) and then time, as TSM and MMV pool.

  Attributes: those of `ResNet` (depth, width, stem, dtype, zero_init_residual, stem_frames,
  stem_time_strides);
  the number of frames is read from the input, so one set of parameters serves any clip length.
  """
  depth: int = 18
  width: int = 64
  stem: str = "imagenet"
  dtype: Any = jnp.float32
  zero_init_residual: bool = True
  stem_frames: int = 1
  stem_time_strides: int = 1

  @nn.compact
  def __call__(self, video, train: bool):
    b, t = video.shape[:2]
    frames = video.reshape((b * t,) + video.shape[2:])
    features = ResNet(self.depth, self.width, self.stem, self.dtype, num_frames=t,
                      zero_init_residual=self.zero_init_residual, stem_frames=self.stem_frames,
                      stem_time_strides=self.stem_time_strides, name="tsm_resnet")(frames, train)
    return jnp.mean(features.reshape(b, t // self.stem_time_strides, -1), axis=1)
