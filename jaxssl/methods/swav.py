"""SwAV (Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020).

encoder -> projector (MLP) -> l2-normalise -> scores against K prototypes (cosines). The codes of
each global crop come from Sinkhorn-Knopp on its stop-gradient scores over the GLOBAL batch (under
jit the scores are global arrays; the reference code all-reduces the sums); every other crop
predicts them (swapped prediction), and the loss averages over all (global crop i, crop j != i)
pairs.

Multi-crop: 2 global crops (the only ones that get codes) and num_local small crops; the
projector's BatchNorm normalises over every crop of the batch (see _multicrop).

Prototypes: normalised in the forward pass (the scores use C / ||C|| column by column, and the
gradient flows through that normalisation), rather than re-projected onto the sphere after each
update as the reference code does; either way the scores are cosines. For the first
freeze_prototypes_steps they get no gradient, as in the paper. Not reproduced: the queue of
past-batch scores, which the paper uses only for batches below 256.

Logged: `prototypes_used`, the fraction of prototypes that are some first-crop example's argmax
code (low values mean the assignments collapse onto few prototypes).
"""
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxssl import losses, models
from jaxssl.methods import _common, _multicrop
from jaxssl.models import heads


class SwAVHead(nn.Module):
  """MLP projector -> l2-normalise -> cosine scores against the (normalised) prototypes."""
  hidden_dim: int
  proj_dim: int
  num_prototypes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    z = heads.MLPHead(hidden_dim=self.hidden_dim, out_dim=self.proj_dim, num_layers=2,
                      dtype=self.dtype, name="mlp")(x, train=train)
    init = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "vocab"))
    prototypes = self.param("prototypes", init, (self.proj_dim, self.num_prototypes), jnp.float32)
    return losses.l2_normalize(z) @ losses.l2_normalize(prototypes, axis=0)


def swapped_prediction_loss(scores, num_global, epsilon, iterations, temperature):
  """scores: list of (B, K) scores per crop, global crops first. Returns (loss, codes of the
  global crops): losses.swav of crop j predicting global crop i's codes, averaged over i and
  every j != i."""
  codes = [jax.lax.stop_gradient(losses.sinkhorn_knopp(jax.lax.stop_gradient(scores[i]), epsilon,
                                                       iterations)) for i in range(num_global)]
  pairs = _multicrop.crop_pairs(num_global, len(scores))
  loss = sum(losses.swav(scores[j], codes[i], temperature) for i, j in pairs) / len(pairs)
  return loss, codes


class Method:

  def __init__(self, config, data_info):
    self.config = config
    self.image_size = data_info.image_size
    args = config.swav
    head = SwAVHead(hidden_dim=args.proj_hidden_dim, proj_dim=args.proj_dim,
                    num_prototypes=args.num_prototypes, dtype=jnp.dtype(config.compute_dtype))
    self.net = _multicrop.MultiCropNet(encoder=models.build_encoder(config.model), projector=head,
                                       predictor=None, num_classes=data_info.num_classes)

  def init(self, rng):
    return _common.init(self.net, rng, self.image_size)

  def loss(self, params, model_state, batch, rng, step):
    args = self.config.swav
    frozen = step < args.freeze_prototypes_steps
    prototypes = params["projector"]["prototypes"]
    params_used = {**params, "projector": {
        **params["projector"],
        "prototypes": jnp.where(frozen, jax.lax.stop_gradient(prototypes), prototypes)}}
    global_view = self.config.augment.global_view
    groups = _multicrop.crops(self.config, rng, batch["image"], self.image_size,
                              [global_view, global_view])
    (features, scores), updates = self.net.apply(
        {"params": params_used, **model_state}, groups, train=True, mutable=["batch_stats"],
        method=_multicrop.MultiCropNet.multicrop)
    num_crops = 2 + self.config.augment.num_local
    swav_loss, codes = swapped_prediction_loss(jnp.split(scores, num_crops), 2, args.epsilon,
                                               args.sinkhorn_iterations, args.temperature)
    assigned = jax.nn.one_hot(jnp.argmax(codes[0], axis=-1), args.num_prototypes, dtype=bool)
    probe_loss, metrics = _common.probe_loss(self.net, params, jnp.split(features[0], 2),
                                             batch["label"])
    metrics.update(swav_loss=swav_loss, prototypes_used=jnp.mean(jnp.any(assigned, axis=0)))
    return swav_loss + probe_loss, (metrics, {**model_state, **updates})

  def embed(self, params, model_state, images):
    return _common.embed(self.net, self.config, self.image_size, params, model_state, images)
