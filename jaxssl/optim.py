"""Optimizers from config: LARS / SGD / AdamW with linear warm-up then cosine decay.

The learning rate is `base_lr * batch_size / 256` (the linear scaling rule of Goyal et al. used by
SimCLR, BYOL and MAE). Weight decay and LARS trust-ratio adaptation skip biases and
normalisation parameters (every array with ndim <= 1), as in the SimCLR and BYOL recipes.
`layer_decay` < 1 scales a ViT's updates layer by layer (BEiT's and MAE's fine-tuning recipe).
"""
import re

import jax
import optax

_BLOCK = re.compile(r"block(\d+)$")
_VIT_INPUT = ("embedding", "cls", "pos_embedding")  # A ViT's layer 0: what precedes block 0.


def _vit_layer(path, depth):
  """BEiT's layer id of a ViT parameter: 0 for the patch/position embeddings and class token,
  i + 1 inside block i, depth + 1 for everything after the blocks (final norm, heads)."""
  names = [getattr(k, "key", str(k)) for k in path]
  for name in names:
    match = _BLOCK.match(name)
    if match:
      return int(match.group(1)) + 1
  return 0 if names[-1] in _VIT_INPUT or names[-2:-1] == ["embedding"] else depth + 1


def layer_decay_scales(params, decay):
  """A pytree of update scales decay ** (depth + 1 - layer id), as MAE's fine-tuning: the head
  moves at the full learning rate, block i at decay ** (depth - i), the embeddings the least."""
  paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  blocks = {_BLOCK.match(getattr(k, "key", "")) for p in paths for k in p}
  depth = len({m.group(1) for m in blocks if m})
  if not depth:
    raise ValueError("optimizer.layer_decay < 1 needs a ViT encoder with unscanned blocks "
                     "(parameters named blockN; set model.scan_layers=False)")
  return jax.tree_util.tree_map_with_path(
      lambda path, _: decay ** (depth + 1 - _vit_layer(path, depth)), params)


def scale_by_layer_decay(decay) -> optax.GradientTransformation:
  """Multiplies each update by its `layer_decay_scales` factor (after the optimizer, so the
  learning rate and the decoupled weight decay of that layer are both scaled, as per-group
  learning rates do in the reference code)."""

  def update(updates, state, params=None):
    del params
    scales = layer_decay_scales(updates, decay)
    return jax.tree.map(lambda u, s: u * s, updates, scales), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def _is_matrix(params):
  return jax.tree.map(lambda p: p.ndim > 1, params)


def learning_rate_schedule(opt_config, batch_size, total_steps):
  peak = opt_config.base_lr * batch_size / 256
  warmup = min(opt_config.warmup_steps, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=0.0)


def make_optimizer(opt_config, batch_size, total_steps):
  """Returns (optax transformation, learning-rate schedule)."""
  schedule = learning_rate_schedule(opt_config, batch_size, total_steps)
  name = opt_config.name
  if name == "lars":
    tx = optax.lars(schedule, weight_decay=opt_config.weight_decay,
                    weight_decay_mask=_is_matrix, trust_ratio_mask=_is_matrix,
                    momentum=opt_config.momentum)
  elif name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(opt_config.weight_decay, mask=_is_matrix),
                     optax.sgd(schedule, momentum=opt_config.momentum))
  elif name == "adamw":
    tx = optax.adamw(schedule, b1=opt_config.b1, b2=opt_config.b2,
                     weight_decay=opt_config.weight_decay, mask=_is_matrix)
  else:
    raise ValueError(f"unknown optimizer {name!r}")
  if not 0 < opt_config.layer_decay <= 1:
    raise ValueError(f"optimizer.layer_decay={opt_config.layer_decay} must be in (0, 1]")
  if opt_config.layer_decay < 1:
    tx = optax.chain(tx, scale_by_layer_decay(opt_config.layer_decay))
  if opt_config.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt_config.grad_clip), tx)
  return tx, schedule
