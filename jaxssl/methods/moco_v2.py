"""MoCo v2 (Chen, Fan, Girshick & He, "Improved Baselines with Momentum Contrastive Learning",
2020; MoCo: He et al., CVPR 2020).

A query encoder (+ MLP head) is trained with InfoNCE: the positive of query q is the key k of the
other view from the momentum (key) encoder, the negatives are the K keys of earlier batches held
in a queue. The key encoder is an EMA of the query encoder with constant momentum m (0.999);
after the loss the batch's keys replace the oldest in the queue. Asymmetric, as in the paper:
view 1 makes the queries, view 2 the keys.

State: model_state = {"batch_stats", "target": key encoder {"params", "batch_stats"},
                      "queue": {"keys": (K, D), "ptr"}} (jaxssl.components.queue).
As in MoCo's code the key encoder is updated before it computes the keys, with the current query
params.

Shuffle-BN is not used. MoCo shuffles keys across GPUs because per-GPU BatchNorm lets a query
and its key share the statistics of one small sub-batch, a leak the network can exploit. Here
BatchNorm statistics are computed over the whole global batch under jit (both encoders, in train
mode), which is SimCLR's remedy for the same leak; it also makes the result independent of the
device count. What remains is the dependence of every example on the batch it sits in, as in
SimCLR.
"""
import jax
import jax.numpy as jnp

from jaxssl import losses, models
from jaxssl.components import queue as queue_lib
from jaxssl.methods import _common
from jaxssl.models import heads


class Method:

  def __init__(self, config, data_info):
    self.config = config
    self.image_size = data_info.image_size
    args = config.moco_v2
    queue_lib.check_size(args.queue_size, config.batch_size)
    self.net = _common.SiameseNet(
        encoder=models.build_encoder(config.model),
        # MoCo v2's head: fc -> ReLU -> fc, without BatchNorm.
        projector=heads.MLPHead(hidden_dim=args.proj_hidden_dim, out_dim=args.proj_dim,
                                num_layers=2, use_bn=False, dtype=jnp.dtype(config.compute_dtype)),
        predictor=None, num_classes=data_info.num_classes)

  def init(self, rng):
    net_rng, queue_rng = jax.random.split(rng)
    variables = _common.init(self.net, net_rng, self.image_size)
    args = self.config.moco_v2
    return {**variables, "target": _common.target_init(variables),
            "queue": queue_lib.init_queue(queue_rng, args.queue_size, args.proj_dim)}

  def loss(self, params, model_state, batch, rng, step):
    del step
    args = self.config.moco_v2
    x_q, x_k = _common.two_views(self.config, rng, batch["image"], self.image_size)
    online = {"params": params, "batch_stats": model_state["batch_stats"]}
    ((features, q, _),), batch_stats = _common.apply_views(self.net, online, [x_q])
    (k,), target = _common.momentum_target(self.net, model_state["target"], params, [x_k],
                                           args.momentum)
    k = losses.l2_normalize(k)
    moco_loss = losses.info_nce(q, k, queue=model_state["queue"]["keys"],
                                temperature=args.temperature)
    probe_loss, metrics = _common.probe_loss(self.net, params, [features], batch["label"])
    metrics.update(moco_loss=moco_loss, contrastive_acc=losses.contrastive_accuracy(q, k))
    new_state = {"batch_stats": batch_stats, "target": target,
                 "queue": queue_lib.enqueue(model_state["queue"], k)}
    return moco_loss + probe_loss, (metrics, new_state)

  def embed(self, params, model_state, images):
    return _common.embed(self.net, self.config, self.image_size, params, model_state, images)
