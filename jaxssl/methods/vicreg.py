"""VICReg (Bardes, Ponce & LeCun, "Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022).

One network (encoder -> 3-layer expander) on two views; the loss is
sim_coeff * invariance (MSE between the two views' embeddings)
+ std_coeff * variance (hinge keeping each dimension's std over the batch above 1)
+ cov_coeff * covariance (squared off-diagonal covariances), all over the GLOBAL batch: under jit
the embeddings are global arrays, so no gather is needed (the reference code all-gathers them).

Each view is forwarded on its own, as in the reference code, so BatchNorm normalises each view
with its own statistics. The three unweighted terms are logged: `variance` near 1 means collapse
(every dimension's std ~0), near 0 means every dimension keeps a std of at least 1.
"""
import jax.numpy as jnp

from jaxssl import losses, models
from jaxssl.methods import _common
from jaxssl.models import heads


class Method:

  def __init__(self, config, data_info):
    self.config = config
    self.image_size = data_info.image_size
    args = config.vicreg
    expander = heads.MLPHead(hidden_dim=args.proj_hidden_dim, out_dim=args.proj_dim,
                             num_layers=args.proj_layers, dtype=jnp.dtype(config.compute_dtype))
    self.net = _common.SiameseNet(encoder=models.build_encoder(config.model), projector=expander,
                                  predictor=None, num_classes=data_info.num_classes)

  def init(self, rng):
    return _common.init(self.net, rng, self.image_size)

  def loss(self, params, model_state, batch, rng, step):
    del step
    args = self.config.vicreg
    views = _common.two_views(self.config, rng, batch["image"], self.image_size)
    variables = {"params": params, "batch_stats": model_state["batch_stats"]}
    ((f1, z1, _), (f2, z2, _)), batch_stats = _common.apply_views(self.net, variables, views)
    ssl_loss = losses.vicreg(z1, z2, args.sim_coeff, args.std_coeff, args.cov_coeff)
    probe_loss, metrics = _common.probe_loss(self.net, params, [f1, f2], batch["label"])
    # For the logs only; XLA shares the computation with the loss's.
    metrics.update(losses.vicreg_terms(z1, z2), ssl_loss=ssl_loss)
    return ssl_loss + probe_loss, (metrics, {"batch_stats": batch_stats})

  def embed(self, params, model_state, images):
    return _common.embed(self.net, self.config, self.image_size, params, model_state, images)
