"""What the two-view joint-embedding methods (BYOL, SimSiam, MoCo v2/v3) share. Not a method.

The network is encoder -> projector [-> predictor] with an online linear probe on the encoder's
features. Unlike SimCLR here, which concatenates its views, these methods forward each view on its
own, as their reference code does: BatchNorm normalises every view with that view's statistics
over the global batch, and running statistics are updated once per forward pass.
"""
from typing import Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxssl import augment
from jaxssl.components import ema, online_probe


class SiameseNet(nn.Module):
  encoder: nn.Module
  projector: nn.Module
  predictor: Optional[nn.Module]
  num_classes: int

  def setup(self):
    self.online_probe = online_probe.OnlineProbe(self.num_classes)

  def __call__(self, x, train, predict=True):
    """(features, projection, prediction); prediction is None without a predictor or when
    `predict` is False (target networks have no predictor params)."""
    features = self.encoder(x, train=train)
    z = self.projector(features, train=train)
    p = self.predictor(z, train=train) if predict and self.predictor is not None else None
    return features, z, p

  def features(self, x):
    return self.encoder(x, train=False)

  def probe(self, features):
    return self.online_probe(features)

  def init_all(self, x):
    features, _, _ = self(x, train=False)
    return self.probe(features)


def init(net, rng, image_size):
  """Boxed variables of every submodule (encoder, projector, predictor, probe)."""
  x = jnp.zeros((2, image_size, image_size, 3), jnp.float32)
  return net.init(rng, x, method=SiameseNet.init_all)


def target_init(variables):
  """A target/momentum network equal to the online encoder + projector, as both papers start."""
  pick = lambda col: {k: v for k, v in variables.get(col, {}).items()
                      if k in ("encoder", "projector")}
  return {"params": pick("params"), "batch_stats": pick("batch_stats")}


def two_views(config, rng, images, image_size):
  """Model inputs of the two augmented views (config.augment.view1 / view2)."""
  views = augment.simclr_views(rng, images, out_size=image_size,
                               cfg_list=[config.augment.view1, config.augment.view2])
  return [augment.model_input(v, config.input_norm) for v in views]


def apply_views(net, variables, views, **kwargs):
  """Runs `net` in train mode on each view in turn. Returns (outputs per view, new batch_stats)."""
  outputs = []
  for x in views:
    out, updates = net.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)
    variables = {**variables, **updates}
    outputs.append(out)
  return outputs, variables["batch_stats"]


def momentum_target(net, target, params, views, tau):
  """Moves the target towards the current online params (EMA with momentum `tau`), then runs it
  on `views`. Returns (projection per view, new target).

  The update comes before the target's forward pass, as in MoCo's code; BYOL updates right after
  the optimizer step, which yields the same target for the next step. The online params are not
  differentiated through: the target only ever receives them by the EMA.
  """
  online = jax.lax.stop_gradient({k: params[k] for k in target["params"]})
  variables = {"params": ema.ema_update(target["params"], online, tau),
               "batch_stats": target["batch_stats"]}
  outputs, batch_stats = apply_views(net, variables, views, predict=False)
  projections = [jax.lax.stop_gradient(z) for _, z, _ in outputs]
  return projections, {**variables, "batch_stats": batch_stats}


def probe_loss(net, params, features, labels):
  """The online probe's loss on the (stop-gradient) features of every view, and its accuracy."""
  logits = net.apply({"params": params}, jnp.concatenate(features), method=SiameseNet.probe)
  return online_probe.probe_loss(logits, jnp.tile(labels, len(features)))


def embed(net, config, image_size, params, model_state, images):
  """Online encoder features of the un-augmented images, for the evaluators."""
  x = augment.model_input(augment.center_view(images, out_size=image_size), config.input_norm)
  features = net.apply({"params": params, **model_state}, x, method=SiameseNet.features)
  return features.astype(jnp.float32)
