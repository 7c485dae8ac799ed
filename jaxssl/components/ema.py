"""Exponential moving averages of parameters: BYOL's target network, MoCo's key encoder."""
import jax
import jax.numpy as jnp


def momentum_schedule(step, total_steps, base):
  """BYOL's (and MoCo v3's) cosine increase of the EMA momentum from `base` at step 0 to 1 at
  `total_steps`: 1 - (1 - base) * (cos(pi * step / total_steps) + 1) / 2.

  `step` may be a traced integer; the result is a float32 scalar.
  """
  progress = jnp.asarray(step, jnp.float32) / total_steps
  return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


def ema_update(target, online, tau):
  """tau * target + (1 - tau) * online, leaf by leaf, in float32.

  `online` must have the structure of `target` (pass the matching subtree of the online params).
  """
  f32 = lambda x: x.astype(jnp.float32)
  return jax.tree.map(lambda t, o: tau * f32(t) + (1.0 - tau) * f32(o), target, online)
