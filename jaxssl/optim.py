"""Optimizers from config: LARS / SGD / AdamW with linear warm-up then cosine decay.

The learning rate is `base_lr * batch_size / 256` (the linear scaling rule of Goyal et al. used by
SimCLR, BYOL and MAE). Weight decay and LARS trust-ratio adaptation skip biases and
normalisation parameters (every array with ndim <= 1), as in the SimCLR and BYOL recipes.
"""
import jax
import optax


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
  if opt_config.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt_config.grad_clip), tx)
  return tx, schedule
