"""Online linear probe: a classifier trained on frozen features alongside the SSL objective.

As in solo-learn (and BYOL's online classifier), its cross-entropy is added to the method's loss
and both are minimised by the same optimizer step. The probe sees `stop_gradient(features)`, so
the gradient of its loss with respect to the encoder is exactly zero: labels train the probe's
own weights and never reach the representation. It is a cheap progress signal during training
(`probe_acc`); the reported numbers come from the evaluators, on held-out data.
"""
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from jaxssl.models import heads


class OnlineProbe(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, features):
    return heads.LinearClassifier(self.num_classes, name="linear")(
        jax.lax.stop_gradient(features).astype(jnp.float32))


def probe_loss(logits, labels):
  """Mean softmax cross-entropy and {"probe_acc": top-1 accuracy} of the probe's logits."""
  logits = logits.astype(jnp.float32)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, {"probe_acc": jnp.mean(jnp.argmax(logits, axis=-1) == labels)}
