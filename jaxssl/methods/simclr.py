"""SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020): two augmented views of every image, encoder + MLP projector, NT-Xent over the global
batch (2N - 2 negatives per anchor).

Both views go through the network as one concatenated batch, as in the reference TF code, so
BatchNorm statistics are computed over all 2N views of the global batch.
"""
import jax.numpy as jnp
from flax import linen as nn

from jaxssl import augment, losses, models
from jaxssl.models import heads

class SimCLRNet(nn.Module):
  encoder: nn.Module
  projector: nn.Module

  def __call__(self, x, train):
    features = self.encoder(x, train=train)
    return features, self.projector(features, train=train)


class Method:

  def __init__(self, config, data_info):
    self.config = config
    self.image_size = data_info.image_size
    args = config.simclr
    dtype = jnp.dtype(config.compute_dtype)
    self.net = SimCLRNet(
        encoder=models.build_encoder(config.model),
        projector=heads.MLPHead(hidden_dim=args.proj_hidden_dim, out_dim=args.proj_dim,
                                num_layers=args.proj_layers, dtype=dtype))
    self.views = [config.augment.view1, config.augment.view2]

  def init(self, rng):
    x = jnp.zeros((2, self.image_size, self.image_size, 3), jnp.float32)
    return self.net.init(rng, x, train=False)

  def _preprocess(self, images):
    return augment.model_input(images, self.config.input_norm)

  def loss(self, params, model_state, batch, rng, step):
    del step
    v1, v2 = augment.simclr_views(rng, batch["image"], out_size=self.image_size, cfg_list=self.views)
    x = self._preprocess(jnp.concatenate([v1, v2], axis=0))
    (_, z), new_state = self.net.apply({"params": params, **model_state}, x, train=True,
                                       mutable=["batch_stats"])
    z1, z2 = jnp.split(z, 2, axis=0)
    loss = losses.nt_xent(z1, z2, self.config.simclr.temperature)
    metrics = {"contrastive_acc": losses.contrastive_accuracy(z1, z2)}
    return loss, (metrics, {**model_state, **new_state})

  def embed(self, params, model_state, images):
    x = self._preprocess(augment.center_view(images, out_size=self.image_size))
    features, _ = self.net.apply({"params": params, **model_state}, x, train=False)
    return features.astype(jnp.float32)
