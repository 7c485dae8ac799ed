"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020).

The online network (encoder -> projector -> predictor) regresses, for each view, the target
network's projection of the other view: byol(p1, sg(z2')) + byol(p2, sg(z1')), with
byol(p, z) = 2 - 2 cos(p, z). The target (encoder + projector) is an EMA of the online weights with
momentum tau = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2, starting equal to the online network.

State: model_state = {"batch_stats": online BN statistics,
                      "target": {"params": ..., "batch_stats": ...}}.
The EMA runs inside loss(), before the target's forward pass and with the current online params
(not differentiated). The paper updates the target right after the optimizer step instead, i.e.
with the same params, so the targets used are the same; the one difference is that tau is
evaluated at step k rather than k - 1, a negligible shift of the schedule.
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
    args = config.byol
    dtype = jnp.dtype(config.compute_dtype)
    mlp = lambda out_dim: heads.MLPHead(hidden_dim=args.hidden_dim, out_dim=out_dim, num_layers=2,
                                        dtype=dtype)
    self.net = _common.SiameseNet(encoder=models.build_encoder(config.model),
                                  projector=mlp(args.proj_dim), predictor=mlp(args.proj_dim),
                                  num_classes=data_info.num_classes)

  def init(self, rng):
    variables = _common.init(self.net, rng, self.image_size)
    return {**variables, "target": _common.target_init(variables)}

  def loss(self, params, model_state, batch, rng, step):
    views = _common.two_views(self.config, rng, batch["image"], self.image_size)
    online = {"params": params, "batch_stats": model_state["batch_stats"]}
    ((f1, _, p1), (f2, _, p2)), batch_stats = _common.apply_views(self.net, online, views)
    tau = ema.momentum_schedule(step, self.config.total_steps, self.config.byol.base_momentum)
    (z1, z2), target = _common.momentum_target(self.net, model_state["target"], params, views, tau)
    byol_loss = losses.byol(p1, z2) + losses.byol(p2, z1)
    probe_loss, metrics = _common.probe_loss(self.net, params, [f1, f2], batch["label"])
    metrics.update(byol_loss=byol_loss, tau=tau)
    return byol_loss + probe_loss, (metrics, {"batch_stats": batch_stats, "target": target})

  def embed(self, params, model_state, images):
    return _common.embed(self.net, self.config, self.image_size, params, model_state, images)
