"""MAE (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022).

One augmented view per image (random resized crop and flip), cut into patches; a random 75% of
each image's patches are masked (`jaxssl.models.mae.random_masking`), the ViT encoder sees the
rest, the decoder predicts every patch, and the loss is the MSE on the masked patches against
per-patch normalised pixels (`jaxssl.losses.mae`, norm_pix). The target is computed from the
model input, i.e. the normalised image, as in the reference code.

Config (`config.mae`): mask_ratio, norm_pix, norm_per_channel (VideoMAE's per-channel target),
decoder_width / decoder_depth / decoder_heads. `config.model` must be a ViT; its pooled output
(the class token) is what `embed` returns for probes, and what fine-tuning starts from.
Logged besides the loss: loss_mean_patch, the same loss for a model predicting the batch's mean
(normalised) patch everywhere, the floor a model that learnt nothing reaches.
"""
import math

import jax
import jax.numpy as jnp

from jaxssl import augment, losses, models
from jaxssl.models import mae as mae_lib


class Method:
  # The target channels per pixel for VideoMAE's per-channel normalisation.
  channels = 3
  maskings = ("random",)  # config.mae.masking values this method accepts.

  def __init__(self, config, data_info):
    if config.model.name != "vit":
      raise ValueError(f"{config.method} needs a ViT encoder: set model.name=vit "
                       f"(got {config.model.name!r})")
    if config.input_norm != "fixed":
      raise ValueError(f"{config.method}: input_norm must be 'fixed' (norm_pix normalises each "
                       "patch itself; the reconstructions are drawn back in [0, 1])")
    self.config, self.args = config, config.mae
    if self.args.masking not in self.maskings:
      raise ValueError(f"{config.method}: mae.masking={self.args.masking!r}; use one of "
                       f"{self.maskings}")
    self.image_size = data_info.image_size
    encoder = models.build_encoder(config.model)
    self.patch, self.tubelet = encoder.patch_size, encoder.tubelet
    self.grid = mae_lib.token_grid(self.input_shape(), self.patch, self.tubelet)
    mae_lib.num_visible(math.prod(self.grid), self.args.mask_ratio)  # Validates the ratio.
    patch_dim = math.prod(self.input_shape()) // math.prod(self.grid)
    decoder = mae_lib.MAEDecoder(self.args.decoder_width, self.args.decoder_depth,
                                 self.args.decoder_heads, patch_dim, encoder.dtype,
                                 encoder.remat, encoder.scan_layers)
    self.net = mae_lib.MaskedAutoencoder(encoder, decoder)

  # ---------------------------------------------------------------- what VideoMAE overrides
  def input_shape(self):
    return (self.image_size, self.image_size, 3)

  def mask(self, rng, batch):
    """(ids_keep, mask, ids_restore) for `batch` inputs."""
    return mae_lib.random_masking(rng, batch, math.prod(self.grid), self.args.mask_ratio)

  def view(self, rng, batch):
    """The augmented training view in [0, 1]."""
    return augment.simclr_view(rng, batch["image"], out_size=self.image_size,
                               cfg=self.config.augment.view)

  def center(self, images):
    """Held-out inputs (uint8) in [0, 1], no augmentation."""
    return augment.center_view(images, out_size=self.image_size)

  def target_pixels(self, view, x):
    """The pixels the decoder predicts: MAE's are the model input x (in [-1, 1])."""
    del view
    return x

  def to_unit(self, pixels):
    """`target_pixels` back to [0, 1] for figures."""
    return (pixels + 1) / 2

  # ---------------------------------------------------------------- the method
  def init(self, rng):
    x = jnp.zeros((2,) + self.input_shape(), jnp.float32)
    ids_keep, _, ids_restore = self.mask(jax.random.key(0), 2)
    return self.net.init(rng, x, ids_keep, ids_restore, train=False)

  def _norm(self):
    return dict(norm_pix=self.args.norm_pix,
                channels=self.channels if self.args.norm_per_channel else None)

  def _reconstruct_patches(self, params, model_state, view, rng, train):
    """(target patches, predicted patches, mask) of views in [0, 1]."""
    x = augment.model_input(view, self.config.input_norm)
    ids_keep, mask, ids_restore = self.mask(rng, x.shape[0])
    pred = self.net.apply({"params": params, **model_state}, x, ids_keep, ids_restore,
                          train=train)
    target = mae_lib.patchify(self.target_pixels(view, x), self.patch, self.tubelet)
    return target, pred, mask

  def loss(self, params, model_state, batch, rng, step):
    del step
    view_rng, mask_rng = jax.random.split(rng)
    target, pred, mask = self._reconstruct_patches(params, model_state,
                                                   self.view(view_rng, batch), mask_rng, True)
    loss = losses.mae(pred, target, mask, **self._norm())
    normalised = losses.mae_target(target, **self._norm())
    mean_patch = (jnp.sum(normalised * mask[..., None], axis=(0, 1))
                  / jnp.maximum(jnp.sum(mask), 1.0))
    metrics = {"loss_mean_patch": losses.mae(jnp.broadcast_to(mean_patch, target.shape), target,
                                             mask, **self._norm())}
    return loss, (metrics, model_state)

  def embed(self, params, model_state, images):
    x = augment.model_input(self.center(images), self.config.input_norm)
    features = self.net.apply({"params": params, **model_state}, x,
                              method=mae_lib.MaskedAutoencoder.features)
    return features.astype(jnp.float32)

  def reconstruct(self, params, model_state, images):
    """{input, masked, reconstruction} in [0, 1] for held-out images, with a fixed mask: the
    visible patches pasted back, the masked ones predicted. With norm_pix a prediction is in
    normalised units; it is drawn with its true patch's mean and spread, as in VideoMAE's
    visualisation (the model cannot know them)."""
    target, pred, mask = self._reconstruct_patches(params, model_state, self.center(images),
                                                   jax.random.key(0), False)
    pred = pred.astype(jnp.float32)
    if self.args.norm_pix:
      pred = self._denormalize(pred, target)
    m = mask[..., None]
    columns = dict(input=target, masked=jnp.where(m > 0, self._grey(), target),
                   reconstruction=jnp.where(m > 0, pred, target))
    unpatch = lambda p: mae_lib.unpatchify(p, self.grid, self.patch, self.tubelet)  # noqa: E731
    return {k: self.to_unit(unpatch(v)) for k, v in columns.items()}

  def _grey(self):
    """Mid-grey (0.5 in [0, 1]; 0 as a model input) in target units, for masked patches."""
    return self.target_pixels(jnp.full((), 0.5), jnp.zeros(()))

  def _denormalize(self, pred, target):
    """Inverse of `losses.mae_target` with the statistics of `target`."""
    if self.args.norm_per_channel:
      n, length, p = target.shape
      t = target.reshape(n, length, p // self.channels, self.channels)
      std = jnp.sqrt(t.var(axis=2, ddof=1, keepdims=True)) + 1e-6
      out = pred.reshape(t.shape) * std + t.mean(axis=2, keepdims=True)
      return out.reshape(pred.shape)
    std = jnp.sqrt(target.var(axis=-1, ddof=1, keepdims=True) + 1e-6)
    return pred * std + target.mean(axis=-1, keepdims=True)
