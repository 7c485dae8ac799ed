"""DINO (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021).

A student (encoder -> DINO head) is trained to match, on every crop, the output distribution of a
teacher on the other global crops: H(softmax((t_i - c) / T_t), softmax(s_j / T_s)) averaged over
all pairs (teacher global crop i, student crop j != i). The teacher is an EMA of the student (no
gradient); the center c is an EMA (momentum 0.9) of the teacher's mean output over the global
batch. Centering prevents one output dimension from dominating, the low teacher temperature
(sharpening) prevents the uniform collapse.

Multi-crop: 2 global crops (config.augment.global1/2) go through teacher and student, num_local
small crops through the student only. As in the reference code's MultiCropWrapper, crops of one
resolution are forwarded together, so BatchNorm statistics are those of a resolution group.

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

from jaxssl import augment, losses, models
from jaxssl.components import ema
from jaxssl.methods import _common


def _dense(features, names, name):
  # DINO initialises its head with a truncated normal (std 0.02) and zero biases.
  return nn.Dense(features, param_dtype=jnp.float32, name=name,
                  kernel_init=nn.with_logical_partitioning(nn.initializers.truncated_normal(0.02), names),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names[-1:]))


class DINOHead(nn.Module):
  """(Dense -> GELU) x (num_layers - 1) -> Dense(bottleneck) -> l2-normalise -> weight-normalised
  Dense(out_dim) without bias. DINO's default head: no BatchNorm, and the last layer's weight
  norm g fixed at 1 (norm_last_layer=True), i.e. each output unit's weight vector has unit norm
  in the forward pass and the gradient flows through that normalisation."""
  hidden_dim: int
  bottleneck_dim: int
  out_dim: int
  num_layers: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    del train  # no BatchNorm in the head
    x = x.astype(self.dtype)
    for i in range(self.num_layers - 1):
      # torch's nn.GELU is the exact (erf) GELU.
      x = nn.gelu(_dense(self.hidden_dim, ("embed", "mlp"), f"dense{i}")(x), approximate=False)
    x = losses.l2_normalize(_dense(self.bottleneck_dim, ("mlp", "embed"), "bottleneck")(x))
    v = self.param("last_layer", nn.with_logical_partitioning(nn.initializers.truncated_normal(0.02),
                                                               ("embed", "vocab")),
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


def crop_pairs(num_teacher, num_student):
  """(teacher crop i, student crop j) pairs of the loss: every j != i (crops of the same image;
  the student's list starts with the teacher's global crops, in the same order)."""
  return [(i, j) for i in range(num_teacher) for j in range(num_student) if j != i]


def multicrop_loss(student_logits, teacher_logits, center, student_temperature, teacher_temperature):
  """Mean of losses.dino over crop_pairs: lists of (B, K) logits per crop."""
  pairs = crop_pairs(len(teacher_logits), len(student_logits))
  return sum(losses.dino(student_logits[j], teacher_logits[i], center, student_temperature,
                         teacher_temperature) for i, j in pairs) / len(pairs)


class Method:

  def __init__(self, config, data_info):
    self.config = config
    self.image_size = data_info.image_size
    args = config.dino
    head = DINOHead(hidden_dim=args.hidden_dim, bottleneck_dim=args.bottleneck_dim,
                    out_dim=args.out_dim, num_layers=args.head_layers,
                    dtype=jnp.dtype(config.compute_dtype))
    self.net = _common.SiameseNet(encoder=models.build_encoder(config.model), projector=head,
                                  predictor=None, num_classes=data_info.num_classes)

  def init(self, rng):
    variables = _common.init(self.net, rng, self.image_size)
    return {**variables, "teacher": _common.target_init(variables),
            "center": {"value": jnp.zeros((self.config.dino.out_dim,), jnp.float32)}}

  def _crops(self, rng, images):
    """Model inputs: the global crops concatenated, then (if any) the local crops concatenated."""
    aug = self.config.augment
    globals_, locals_ = augment.multicrop_views(
        rng, images, global_size=self.image_size, local_size=aug.local_size,
        global_cfgs=[aug.global1, aug.global2], local_cfg=aug.local, num_local=aug.num_local)
    groups = [jnp.concatenate(globals_)] + ([jnp.concatenate(locals_)] if locals_ else [])
    return [augment.model_input(x, self.config.input_norm) for x in groups]

  def loss(self, params, model_state, batch, rng, step):
    args = self.config.dino
    groups = self._crops(rng, batch["image"])
    num_global, num_crops = 2, 2 + self.config.augment.num_local
    tau = ema.momentum_schedule(step, self.config.total_steps, args.base_momentum)
    (teacher_out,), teacher = _common.momentum_target(self.net, model_state["teacher"], params,
                                                      groups[:1], tau)
    # The reference code drops the last layer's gradient for its first epoch.
    last_layer = params["projector"]["last_layer"]
    student_params = {**params, "projector": {**params["projector"], "last_layer": jnp.where(
        step < args.freeze_last_layer_steps, jax.lax.stop_gradient(last_layer), last_layer)}}
    variables = {"params": student_params, "batch_stats": model_state["batch_stats"]}
    outputs, batch_stats = _common.apply_views(self.net, variables, groups)
    student_out = jnp.concatenate([z for _, z, _ in outputs])

    center = model_state["center"]["value"]
    t_student, t_teacher = args.student_temp, teacher_temperature(step, args)
    dino_loss = multicrop_loss(jnp.split(student_out, num_crops), jnp.split(teacher_out, num_global),
                               center, t_student, t_teacher)
    log_p = jax.nn.log_softmax((teacher_out.astype(jnp.float32) - center) / t_teacher)
    teacher_entropy = -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1))
    probe_loss, metrics = _common.probe_loss(self.net, params, jnp.split(outputs[0][0], num_global),
                                             batch["label"])
    metrics.update(dino_loss=dino_loss, teacher_entropy=teacher_entropy,
                   kl=dino_loss - teacher_entropy, teacher_temp=t_teacher, tau=tau)
    new_state = {"batch_stats": batch_stats, "teacher": teacher,
                 "center": {"value": update_center(center, teacher_out, args.center_momentum)}}
    return dino_loss + probe_loss, (metrics, new_state)

  def embed(self, params, model_state, images):
    del params  # the teacher's encoder, as the paper evaluates
    teacher = model_state["teacher"]
    return _common.embed(self.net, self.config, self.image_size, teacher["params"],
                         {"batch_stats": teacher["batch_stats"]}, images)
