"""What the multi-crop methods (SwAV, DINO) share. Not a method.

Crops of one resolution are forwarded together through the encoder and the head then runs once on
every crop, as in both reference codes (SwAV's ResNet forward, DINO's MultiCropWrapper): a
BatchNorm in the head normalises over all crops of the batch, one in the encoder over the crops
of one resolution.
"""
import jax.numpy as jnp

from jaxssl import augment
from jaxssl.methods import _common


class MultiCropNet(_common.SiameseNet):

  def multicrop(self, groups, train):
    """Encoder per group of same-size crops, then the projector (head) on all crops at once.
    Returns (features per group, head outputs of every crop in group order)."""
    features = [self.encoder(x, train=train) for x in groups]
    return features, self.projector(jnp.concatenate(features), train=train)


def crops(config, rng, images, image_size, global_cfgs):
  """Model inputs: the global crops (one per config, at image_size) concatenated, then, if
  config.augment.num_local > 0, the local crops concatenated."""
  aug = config.augment
  globals_, locals_ = augment.multicrop_views(
      rng, images, global_size=image_size, local_size=aug.local_size, global_cfgs=global_cfgs,
      local_cfg=aug.local, num_local=aug.num_local)
  groups = [jnp.concatenate(globals_)] + ([jnp.concatenate(locals_)] if locals_ else [])
  return [augment.model_input(x, config.input_norm) for x in groups]


def crop_pairs(num_global, num_crops):
  """(global crop i, crop j) pairs of both losses: every j != i among all crops, which list the
  global crops first (a crop is never its own target)."""
  return [(i, j) for i in range(num_global) for j in range(num_crops) if j != i]
