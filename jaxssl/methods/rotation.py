"""RotNet (Gidaris, Singh & Komodakis, "Unsupervised Representation Learning by Predicting Image
Rotations", ICLR 2018): the network sees each image rotated by 0, 90, 180 and 270 degrees and
names the rotation (4-way softmax cross-entropy, `losses.pretext_classification`). To tell which
way is up it has to recognise the object and its canonical pose.

As in the paper's best variant, every image of the batch is fed in all four rotations at once
(4N inputs per step, labels balanced by construction). The images are first cropped and flipped
(config.augment.view), as the paper does on CIFAR-10; flips keep up and down where they are, so
they do not blur the labels. The classifier on the encoder's pooled features is an MLP
(config.rotation.head_layers Dense layers), and an online linear probe on the stop-gradient
features of the unrotated images reports `probe_acc`, as in the other methods.
"""
import jax.numpy as jnp
from flax import linen as nn

from jaxssl import augment, losses, models
from jaxssl.components import online_probe
from jaxssl.models import heads

NUM_ROTATIONS = 4


def rotations(images):
  """(B, S, S, C) -> (4B, S, S, C): the batch rotated counter-clockwise by 0, 90, 180 and 270
  degrees, in that order, and the (4B,) labels 0-3."""
  if images.ndim != 4 or images.shape[1] != images.shape[2]:
    raise ValueError(f"rotation prediction needs square images (B, S, S, C), got {images.shape}")
  rotated = jnp.concatenate([jnp.rot90(images, k, axes=(1, 2)) for k in range(NUM_ROTATIONS)])
  labels = jnp.repeat(jnp.arange(NUM_ROTATIONS, dtype=jnp.int32), images.shape[0])
  return rotated, labels


class RotNet(nn.Module):
  encoder: nn.Module
  head: nn.Module
  num_classes: int

  def setup(self):
    self.online_probe = online_probe.OnlineProbe(self.num_classes)

  def __call__(self, x, train):
    features = self.encoder(x, train=train)
    return features, self.head(features, train=train)

  def features(self, x):
    return self.encoder(x, train=False)

  def probe(self, features):
    return self.online_probe(features)

  def init_all(self, x):
    features, _ = self(x, train=False)
    return self.probe(features)


class Method:

  def __init__(self, config, data_info):
    self.config = config
    self.image_size = data_info.image_size
    args = config.rotation
    head = heads.MLPHead(hidden_dim=args.head_hidden_dim, out_dim=NUM_ROTATIONS,
                         num_layers=args.head_layers, dtype=jnp.dtype(config.compute_dtype))
    self.net = RotNet(encoder=models.build_encoder(config.model), head=head,
                      num_classes=data_info.num_classes)

  def init(self, rng):
    x = jnp.zeros((2, self.image_size, self.image_size, 3), jnp.float32)
    return self.net.init(rng, x, method=RotNet.init_all)

  def loss(self, params, model_state, batch, rng, step):
    del step
    views = augment.simclr_view(rng, batch["image"], out_size=self.image_size,
                                cfg=self.config.augment.view)
    x, labels = rotations(augment.model_input(views, self.config.input_norm))
    (features, logits), new_state = self.net.apply(
        {"params": params, **model_state}, x, train=True, mutable=["batch_stats"])
    rotation_loss = losses.pretext_classification(logits, labels)
    upright = features[:batch["image"].shape[0]]  # rotation 0: the images as they are
    probe_logits = self.net.apply({"params": params}, upright, method=RotNet.probe)
    probe_loss, metrics = online_probe.probe_loss(probe_logits, batch["label"])
    metrics.update(rotation_loss=rotation_loss,
                   rotation_acc=jnp.mean(jnp.argmax(logits, axis=-1) == labels))
    return rotation_loss + probe_loss, (metrics, {**model_state, **new_state})

  def embed(self, params, model_state, images):
    x = augment.model_input(augment.center_view(images, out_size=self.image_size),
                            self.config.input_norm)
    features = self.net.apply({"params": params, **model_state}, x, method=RotNet.features)
    return features.astype(jnp.float32)
