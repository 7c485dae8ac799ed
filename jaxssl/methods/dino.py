"""DINO (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021).

A student (encoder -> DINO head) is trained to match, on every crop, the output distribution of a
teacher on the other global crops: H(softmax((t_i - c) / T_t), softmax(s_j / T_s)) averaged over
all pairs (teacher global crop i, student crop j != i). The teacher is an EMA of the student (no
gradient); the center c is an EMA (momentum 0.9) of the teacher's mean output over the global
batch. Centering prevents one output dimension from dominating, the low teacher temperature
(sharpening) prevents the uniform collapse.

Multi-crop: 2 global crops (config.augment.global1/2) go through teacher and student, num_local
small crops through the student only (see _multicrop for how crops are batched).

State: model_state = {"batch_stats": student BN statistics,
                      "teacher": {"params": {encoder, projector}, "batch_stats": ...},
                      "center": {"value": (out_dim,)}}.
One-step offset: the EMA runs inside loss(), with the student params of this step before its
optimizer update, and that updated teacher produces this step's targets. The reference code
updates the teacher right after each optimizer step, i.e. with the same params, so the teachers
used are the same; only the momentum is evaluated at step k instead of k - 1. The center is
updated after the loss, with this step's teacher outputs, as in the reference code.

Evaluation embeds with the teacher's encoder, as the paper does (the teacher is the better model
throughout training, sec. 5.2). Logged: `teacher_entropy` (mean entropy of the teacher's
distributions; log(out_dim) is uniform collapse, ~0 with equal outputs is one-hot collapse) and
`kl` (mean KL(teacher || student) over the pairs, = loss - teacher_entropy).
"""
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxssl import losses, models
from jaxssl.components import ema
from jaxssl.methods import _common, _multicrop


# DINO initialises its head with a truncated normal (std 0.02) and zero biases.
_INIT = nn.initializers.truncated_normal(0.02)


def _dense(features, names, name):
  return nn.Dense(features, param_dtype=jnp.float32, name=name,
                  kernel_init=nn.with_logical_partitioning(_INIT, names),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names[-1:]))


class DINOHead(nn.Module):
  """(Dense [-> BatchNorm] -> GELU) x (num_layers - 1) -> Dense(bottleneck) -> l2-normalise ->
  weight-normalised Dense(out_dim) without bias. The last layer's weight norm g is fixed at 1
  (the reference code's norm_last_layer=True): each output unit's weight vector has unit norm in
  the forward pass and the gradient flows through that normalisation. `use_bn` is the reference
  code's use_bn_in_head (off by default there)."""
  hidden_dim: int
  bottleneck_dim: int
  out_dim: int
  num_layers: int = 3
  use_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    x = x.astype(self.dtype)
    for i in range(self.num_layers - 1):
      x = _dense(self.hidden_dim, ("embed", "mlp"), f"dense{i}")(x)
      if self.use_bn:
        # torch's BatchNorm1d defaults (momentum 0.1 = flax's 0.9), statistics over the global batch.
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype, param_dtype=jnp.float32, name=f"bn{i}",
                         scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                         bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)))(x)
      x = nn.gelu(x, approximate=False)  # torch's nn.GELU is the exact (erf) GELU
    x = losses.l2_normalize(_dense(self.bottleneck_dim, ("mlp", "embed"), "bottleneck")(x))
    v = self.param("last_layer", nn.with_logical_partitioning(_INIT, ("embed", "vocab")),
                   (self.bottleneck_dim, self.out_dim), jnp.float32)
    return x @ losses.l2_normalize(v, axis=0)


def teacher_temperature(step, args):
  """Linear warm-up from args.warmup_teacher_temp to args.teacher_temp over
  args.teacher_temp_warmup_steps, then constant."""
  if args.teacher_temp_warmup_steps <= 0:
    return jnp.asarray(args.teacher_temp, jnp.float32)
  progress = jnp.minimum(jnp.asarray(step, jnp.float32) / args.teacher_temp_warmup_steps, 1.0)
  return args.warmup_teacher_temp + (args.teacher_temp - args.warmup_teacher_temp) * progress


def update_center(center, teacher_logits, momentum):
  """EMA of the teacher's mean output. `teacher_logits` holds every teacher output of the global
  batch (all global crops): under jit the mean is over the whole batch, the reference code's
  all-reduce."""
  return momentum * center + (1.0 - momentum) * jnp.mean(teacher_logits.astype(jnp.float32), axis=0)


def multicrop_loss(student_logits, teacher_logits, center, student_temp, teacher_temp):
  """Mean of losses.dino over every (teacher global crop i, student crop j != i): lists of (B, K)
  logits per crop, the student's starting with the global crops in the teacher's order."""
  pairs = _multicrop.crop_pairs(len(teacher_logits), len(student_logits))
  return sum(losses.dino(student_logits[j], teacher_logits[i], center, student_temp, teacher_temp)
             for i, j in pairs) / len(pairs)


class Method:

  def __init__(self, config, data_info):
    self.config = config
    self.image_size = data_info.image_size
    args = config.dino
    head = DINOHead(hidden_dim=args.hidden_dim, bottleneck_dim=args.bottleneck_dim,
                    out_dim=args.out_dim, num_layers=args.head_layers, use_bn=args.head_bn,
                    dtype=jnp.dtype(config.compute_dtype))
    self.net = _multicrop.MultiCropNet(encoder=models.build_encoder(config.model), projector=head,
                                       predictor=None, num_classes=data_info.num_classes)

  def init(self, rng):
    variables = _common.init(self.net, rng, self.image_size)
    return {**variables, "teacher": _common.target_init(variables),
            "center": {"value": jnp.zeros((self.config.dino.out_dim,), jnp.float32)}}

  def loss(self, params, model_state, batch, rng, step):
    args = self.config.dino
    aug = self.config.augment
    groups = _multicrop.crops(self.config, rng, batch["image"], self.image_size,
                              [aug.global1, aug.global2])
    num_global, num_crops = 2, 2 + aug.num_local
    tau = ema.momentum_schedule(step, self.config.total_steps, args.base_momentum)
    (teacher_out,), teacher = _common.momentum_target(self.net, model_state["teacher"], params,
                                                      groups[:1], tau)
    # The reference code drops the last layer's gradient for its first epoch.
    last_layer = params["projector"]["last_layer"]
    student_params = {**params, "projector": {**params["projector"], "last_layer": jnp.where(
        step < args.freeze_last_layer_steps, jax.lax.stop_gradient(last_layer), last_layer)}}
    (features, student_out), updates = self.net.apply(
        {"params": student_params, "batch_stats": model_state["batch_stats"]}, groups, train=True,
        mutable=["batch_stats"], method=_multicrop.MultiCropNet.multicrop)

    center = model_state["center"]["value"]
    t_student, t_teacher = args.student_temp, teacher_temperature(step, args)
    dino_loss = multicrop_loss(jnp.split(student_out, num_crops),
                               jnp.split(teacher_out, num_global), center, t_student, t_teacher)
    log_p = jax.nn.log_softmax((teacher_out.astype(jnp.float32) - center) / t_teacher)
    teacher_entropy = -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1))
    probe_loss, metrics = _common.probe_loss(self.net, params, jnp.split(features[0], num_global),
                                             batch["label"])
    metrics.update(dino_loss=dino_loss, teacher_entropy=teacher_entropy,
                   kl=dino_loss - teacher_entropy, teacher_temp=t_teacher, tau=tau)
    new_state = {"batch_stats": updates["batch_stats"], "teacher": teacher,
                 "center": {"value": update_center(center, teacher_out, args.center_momentum)}}
    return dino_loss + probe_loss, (metrics, new_state)

  def embed(self, params, model_state, images):
    del params  # the teacher's encoder, as the paper evaluates
    teacher = model_state["teacher"]
    return _common.embed(self.net, self.config, self.image_size, teacher["params"],
                         {"batch_stats": teacher["batch_stats"]}, images)
