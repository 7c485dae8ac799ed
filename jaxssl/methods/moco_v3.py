"""MoCo v3 (Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision Transformers",
ICCV 2021).

Base encoder (ResNet or ViT, config.model.name) -> projector -> predictor; momentum encoder
(encoder + projector) updated by EMA with BYOL's cosine momentum schedule. No queue: the other
keys of the (global) batch are the negatives. Symmetric loss, scaled by 2T as in the paper's code:
  2T * (info_nce(q1, sg(k2), T) + info_nce(q2, sg(k1), T)).

State: model_state = {"batch_stats", "target": momentum encoder {"params", "batch_stats"}}.
As in the paper's code, the momentum encoder is updated before it computes the keys, with the
current base params.

For ViT the paper's heads differ (a 3-layer projector, output BN on the predictor): set
proj_layers=3, pred_last_bn=True. Its frozen random patch projection is not implemented.
"""
import jax.numpy as jnp

from jaxssl import losses, models
from jaxssl.components import ema
from jaxssl.methods import _common
from jaxssl.models import heads


class Method:

  def __init__(self, config, data_info):
    self.config = config
    self.image_size = data_info.image_size
    args = config.moco_v3
    dtype = jnp.dtype(config.compute_dtype)
    self.net = _common.SiameseNet(
        encoder=models.build_encoder(config.model),
        projector=heads.MLPHead(hidden_dim=args.hidden_dim, out_dim=args.proj_dim,
                                num_layers=args.proj_layers, last_bn=True, dtype=dtype),
        predictor=heads.MLPHead(hidden_dim=args.hidden_dim, out_dim=args.proj_dim, num_layers=2,
                                last_bn=args.pred_last_bn, dtype=dtype),
        num_classes=data_info.num_classes)

  def init(self, rng):
    variables = _common.init(self.net, rng, self.image_size)
    return {**variables, "target": _common.target_init(variables)}

  def loss(self, params, model_state, batch, rng, step):
    args = self.config.moco_v3
    views = _common.two_views(self.config, rng, batch["image"], self.image_size)
    online = {"params": params, "batch_stats": model_state["batch_stats"]}
    ((f1, _, q1), (f2, _, q2)), batch_stats = _common.apply_views(self.net, online, views)
    tau = ema.momentum_schedule(step, self.config.total_steps, args.base_momentum)
    (k1, k2), target = _common.momentum_target(self.net, model_state["target"], params, views, tau)
    t = args.temperature
    moco_loss = 2 * t * (losses.info_nce(q1, k2, temperature=t)
                         + losses.info_nce(q2, k1, temperature=t))
    probe_loss, metrics = _common.probe_loss(self.net, params, [f1, f2], batch["label"])
    metrics.update(moco_loss=moco_loss, tau=tau,
                   contrastive_acc=losses.contrastive_accuracy(q1, k2))
    return moco_loss + probe_loss, (metrics, {"batch_stats": batch_stats, "target": target})

  def embed(self, params, model_state, images):
    return _common.embed(self.net, self.config, self.image_size, params, model_state, images)
