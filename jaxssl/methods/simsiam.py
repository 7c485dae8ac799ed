"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021).

One network (encoder -> projector -> bottleneck predictor) on both views; the loss is the
negative cosine between each view's prediction and the other view's projection, whose gradient is
stopped: simsiam(p1, sg(z2)) / 2 + simsiam(p2, sg(z1)) / 2. The stop-gradient is what prevents
collapse; `z_std` (the per-dimension std of the l2-normalised projections, times sqrt(d)) is the
paper's collapse monitor: ~1 when healthy, 0 when every output is the same vector.

Not reproduced: the paper keeps the predictor's learning rate fixed (no cosine decay), which
would need a second optimizer group.
"""
import jax
import jax.numpy as jnp

from jaxssl import losses, models
from jaxssl.methods import _common
from jaxssl.models import heads


def _normalized_std(z):
  z = losses.l2_normalize(z)
  return jnp.mean(jnp.std(z, axis=0)) * jnp.sqrt(z.shape[-1])


class Method:

  def __init__(self, config, data_info):
    self.config = config
    self.image_size = data_info.image_size
    args = config.simsiam
    dtype = jnp.dtype(config.compute_dtype)
    self.net = _common.SiameseNet(
        encoder=models.build_encoder(config.model),
        # The projector's output BN (no affine) is part of the paper's design.
        projector=heads.MLPHead(hidden_dim=args.proj_hidden_dim, out_dim=args.proj_dim,
                                num_layers=args.proj_layers, last_bn=True, dtype=dtype),
        predictor=heads.MLPHead(hidden_dim=args.pred_hidden_dim, out_dim=args.proj_dim,
                                num_layers=2, dtype=dtype),
        num_classes=data_info.num_classes)

  def init(self, rng):
    return _common.init(self.net, rng, self.image_size)

  def loss(self, params, model_state, batch, rng, step):
    del step
    views = _common.two_views(self.config, rng, batch["image"], self.image_size)
    online = {"params": params, "batch_stats": model_state["batch_stats"]}
    ((f1, z1, p1), (f2, z2, p2)), batch_stats = _common.apply_views(self.net, online, views)
    sg = jax.lax.stop_gradient
    simsiam_loss = losses.simsiam(p1, sg(z2)) / 2 + losses.simsiam(p2, sg(z1)) / 2
    probe_loss, metrics = _common.probe_loss(self.net, params, [f1, f2], batch["label"])
    metrics.update(simsiam_loss=simsiam_loss, z_std=_normalized_std(z1))
    return simsiam_loss + probe_loss, (metrics, {"batch_stats": batch_stats})

  def embed(self, params, model_state, images):
    return _common.embed(self.net, self.config, self.image_size, params, model_state, images)
