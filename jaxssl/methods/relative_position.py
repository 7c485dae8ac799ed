"""Context prediction (Doersch, Gupta & Efros, "Unsupervised Visual Representation Learning by
Context Prediction", ICCV 2015): given the centre patch of a 3x3 grid and one of its 8
neighbours, the network names the neighbour's position (8-way softmax cross-entropy,
`losses.pretext_classification`). Telling which part of an object lies above or left of another
requires recognising the parts.

The grid (`grid_patches`) follows the paper's guards against trivial solutions: patches are
separated by a gap (no continuing lines or textures across the border) and each is jittered by
up to `jitter` pixels (no exact alignment to match), and with `color_dropping` each patch keeps
one random colour channel, the other two replaced by faint noise (chromatic aberration cannot
tell a patch's position). Each patch goes through the encoder on its own (the paper's late
fusion); the pair head sees the two feature vectors concatenated (fc7-fc8 of the paper as an
MLP). Every image contributes all 8 (centre, neighbour) pairs of its grid, the paper one random
pair: the same loss per pair, 8 labels per image at the cost of 9 patch encodings.

An image's embedding for the evaluators is the mean of the encoder's features over the 9
patches of a centred grid without jitter, as Kolesnikov et al. ("Revisiting Self-Supervised
Visual Representation Learning", CVPR 2019) evaluate patch-based methods; with colour dropping,
over each patch's three single-channel versions, the only inputs the encoder was trained on.
(The encoder on whole images transfers poorly at this scale: on `shapes`, kNN 0.2985 against
0.416 for the grid of colour patches, one run.) An online linear probe on the stop-gradient
mean of an image's 9 training patches reports `probe_acc`.
"""
import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxssl import augment, losses, models
from jaxssl.components import online_probe
from jaxssl.models import heads

NUM_POSITIONS = 8
_CENTRE = 4  # index of the centre in the 3x3 grid, read row by row


def grid_span(patch_size, gap, jitter):
  """Side of the square that a jittered 3x3 grid of patches can cover."""
  return 3 * patch_size + 2 * gap + 2 * jitter


def grid_patches(rng, images, *, patch_size, gap, jitter):
  """(B, S, S, C) -> (B, 9, P, P, C): a 3x3 grid of P x P patches per image, read row by row
  (index 4 is the centre), `gap` pixels apart, each moved by up to `jitter` pixels in x and y, the
  grid placed at a random offset. With rng None: the grid centred, no jitter (evaluation).
  Returns (patches, top-left corners (B, 9, 2))."""
  b, s = images.shape[0], images.shape[1]
  span = grid_span(patch_size, gap, jitter)
  if images.shape[2] != s or span > s:
    raise ValueError(f"a 3x3 grid of {patch_size}-pixel patches with gap {gap} and jitter "
                     f"{jitter} spans {span} pixels: it needs square images of at least that "
                     f"size, got {images.shape[1:3]}")
  cell = jnp.arange(3) * (patch_size + gap)
  grid = jnp.stack(jnp.meshgrid(cell, cell, indexing="ij"), -1).reshape(1, 9, 2)
  if rng is None:
    corners = jnp.broadcast_to(grid + (s - span) // 2 + jitter, (b, 9, 2))
  else:
    k_origin, k_jitter = jax.random.split(rng)
    origin = jax.random.randint(k_origin, (b, 1, 2), 0, s - span + 1) + jitter
    corners = origin + grid + jax.random.randint(k_jitter, (b, 9, 2), -jitter, jitter + 1)

  def crop(image, corner):
    return jax.lax.dynamic_slice(image, (corner[0], corner[1], 0),
                                 (patch_size, patch_size, image.shape[-1]))

  return jax.vmap(jax.vmap(crop, in_axes=(None, 0)))(images, corners), corners


def drop_colors(rng, patches):
  """The paper's colour dropping: each patch (..., P, P, 3) keeps one random channel; the other
  two become Gaussian noise of 1/100 the kept channel's standard deviation over the patch."""
  k_channel, k_noise = jax.random.split(rng)
  keep = jax.random.randint(k_channel, patches.shape[:-3] + (1, 1, 1), 0, 3)
  kept = jnp.take_along_axis(patches, keep, axis=-1)
  std = jnp.std(kept, axis=(-3, -2, -1), keepdims=True)
  noise = 0.01 * std * jax.random.normal(k_noise, patches.shape, patches.dtype)
  return jnp.where(jnp.arange(3) == keep, patches, noise)


def centre_neighbour_pairs(features):
  """(B, 9, D) patch features -> (8B, 2D) [centre, neighbour] pairs and their (8B,) labels: the
  neighbour's position 0-7 (row by row, the centre skipped)."""
  b = features.shape[0]
  neighbours = jnp.concatenate([features[:, :_CENTRE], features[:, _CENTRE + 1:]], axis=1)
  centre = jnp.broadcast_to(features[:, _CENTRE:_CENTRE + 1], neighbours.shape)
  pairs = jnp.concatenate([centre, neighbours], axis=-1).reshape(b * NUM_POSITIONS, -1)
  labels = jnp.tile(jnp.arange(NUM_POSITIONS, dtype=jnp.int32), b)
  return pairs, labels


class ContextNet(nn.Module):
  encoder: nn.Module
  pair_head: nn.Module
  num_classes: int

  def setup(self):
    self.online_probe = online_probe.OnlineProbe(self.num_classes)

  def __call__(self, patches, train):
    """(B, 9, P, P, C) patches -> ((B, 9, D) features, (8B, 8) position logits, (8B,) labels)."""
    b = patches.shape[0]
    features = self.encoder(patches.reshape((b * 9,) + patches.shape[2:]), train=train)
    features = features.reshape(b, 9, -1)
    pairs, labels = centre_neighbour_pairs(features)
    return features, self.pair_head(pairs, train=train), labels

  def features(self, x):
    return self.encoder(x, train=False)

  def probe(self, features):
    return self.online_probe(features)

  def init_all(self, patches):
    features, _, _ = self(patches, train=False)
    return self.probe(features.mean(axis=1))


class Method:

  def __init__(self, config, data_info):
    self.config = config
    self.image_size = data_info.image_size
    args = config.relative_position
    self.grid = dict(patch_size=args.patch_size, gap=args.gap, jitter=args.jitter)
    span = grid_span(**self.grid)
    if span > self.image_size:
      raise ValueError(f"config.relative_position: the grid spans {span} pixels (3 x patch_size "
                       f"+ 2 x gap + 2 x jitter) but images are {self.image_size} pixels")
    pair_head = heads.MLPHead(hidden_dim=args.head_hidden_dim, out_dim=NUM_POSITIONS,
                              num_layers=args.head_layers, dtype=jnp.dtype(config.compute_dtype))
    self.net = ContextNet(encoder=models.build_encoder(config.model), pair_head=pair_head,
                          num_classes=data_info.num_classes)

  def init(self, rng):
    p = self.grid["patch_size"]
    return self.net.init(rng, jnp.zeros((2, 9, p, p, 3), jnp.float32), method=ContextNet.init_all)

  def _patches(self, rng, images):
    k_view, k_grid, k_drop = jax.random.split(rng, 3)
    views = augment.simclr_view(k_view, images, out_size=self.image_size,
                                cfg=self.config.augment.view)
    patches, _ = grid_patches(k_grid, augment.model_input(views, self.config.input_norm),
                              **self.grid)
    return drop_colors(k_drop, patches) if self.config.relative_position.color_dropping else patches

  def loss(self, params, model_state, batch, rng, step):
    del step
    patches = self._patches(rng, batch["image"])
    (features, logits, labels), new_state = self.net.apply(
        {"params": params, **model_state}, patches, train=True, mutable=["batch_stats"])
    position_loss = losses.pretext_classification(logits, labels)
    probe_logits = self.net.apply({"params": params}, features.mean(axis=1),
                                  method=ContextNet.probe)
    probe_loss, metrics = online_probe.probe_loss(probe_logits, batch["label"])
    metrics.update(position_loss=position_loss,
                   position_acc=jnp.mean(jnp.argmax(logits, axis=-1) == labels))
    return position_loss + probe_loss, (metrics, {**model_state, **new_state})

  def embed(self, params, model_state, images):
    x = augment.model_input(augment.center_view(images, out_size=self.image_size),
                            self.config.input_norm)
    patches, _ = grid_patches(None, x, **self.grid)  # (B, 9, P, P, 3)
    if self.config.relative_position.color_dropping:
      # The encoder has only seen patches with one colour channel (the others faint noise): each
      # patch goes in as its three single-channel versions.
      patches = jnp.stack([jnp.where(jnp.arange(3) == c, patches, 0.0) for c in range(3)], 1)
    b = patches.shape[0]
    features = self.net.apply({"params": params, **model_state},
                              patches.reshape((-1,) + patches.shape[-3:]),
                              method=ContextNet.features)
    return features.reshape(b, -1, features.shape[-1]).mean(axis=1).astype(jnp.float32)
