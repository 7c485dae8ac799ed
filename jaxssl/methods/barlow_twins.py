"""Barlow Twins (Zbontar et al., "Self-Supervised Learning via Redundancy Reduction", ICML 2021).

One network (encoder -> 3-layer projector) on two views; the loss drives the cross-correlation
matrix C of the two views' batch-standardised projections towards the identity:
sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2. C is computed over the GLOBAL batch: under jit
the projections are global arrays, so no explicit all-reduce is needed (the paper all-reduces C).

Each view is forwarded on its own, as in the reference code, so BatchNorm normalises each view
with its own statistics. Logged: `on_diag` = mean_i (1 - C_ii)^2 (invariance, 0 when the two views'
features agree) and `off_diag` = mean_{i != j} C_ij^2 (redundancy, 0 when features decorrelate).
"""
import jax.numpy as jnp

from jaxssl import losses, models
from jaxssl.methods import _common
from jaxssl.models import heads


class Method:

  def __init__(self, config, data_info):
    self.config = config
    self.image_size = data_info.image_size
    args = config.barlow_twins
    projector = heads.MLPHead(hidden_dim=args.proj_hidden_dim, out_dim=args.proj_dim,
                              num_layers=args.proj_layers, dtype=jnp.dtype(config.compute_dtype))
    self.net = _common.SiameseNet(encoder=models.build_encoder(config.model), projector=projector,
                                  predictor=None, num_classes=data_info.num_classes)

  def init(self, rng):
    return _common.init(self.net, rng, self.image_size)

  def loss(self, params, model_state, batch, rng, step):
    del step
    views = _common.two_views(self.config, rng, batch["image"], self.image_size)
    variables = {"params": params, "batch_stats": model_state["batch_stats"]}
    ((f1, z1, _), (f2, z2, _)), batch_stats = _common.apply_views(self.net, variables, views)
    ssl_loss = losses.barlow_twins(z1, z2, self.config.barlow_twins.lambda_offdiag)
    # The two terms apart, for the logs only (XLA computes the shared cross-correlation once).
    on_diag = losses.barlow_twins(z1, z2, lambda_offdiag=0.0)
    off_diag = losses.barlow_twins(z1, z2, lambda_offdiag=1.0) - on_diag
    d = z1.shape[-1]
    probe_loss, metrics = _common.probe_loss(self.net, params, [f1, f2], batch["label"])
    metrics.update(ssl_loss=ssl_loss, on_diag=on_diag / d, off_diag=off_diag / (d * (d - 1)))
    return ssl_loss + probe_loss, (metrics, {"batch_stats": batch_stats})

  def embed(self, params, model_state, images):
    return _common.embed(self.net, self.config, self.image_size, params, model_state, images)
