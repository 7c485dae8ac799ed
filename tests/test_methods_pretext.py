"""Method-specific logic of the classic pretext tasks (their loss is tested in test_losses.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from configs import relative_position as relative_position_config
from configs import rotation as rotation_config
from jaxssl import augment, methods
from jaxssl.methods import relative_position, rotation


def test_rotations_are_the_four_quarter_turns_with_their_labels():
  images = np.random.default_rng(0).integers(0, 256, (3, 5, 5, 2), dtype=np.uint8)
  rotated, labels = rotation.rotations(jnp.asarray(images))
  assert rotated.shape == (12, 5, 5, 2) and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
  for i, (image, label) in enumerate(zip(np.tile(images, (4, 1, 1, 1)), labels.tolist())):
    np.testing.assert_array_equal(rotated[i], np.rot90(image, label))  # counter-clockwise
  # A 90-degree turn moves the top row to the left column, read bottom-up.
  np.testing.assert_array_equal(rotated[3, :, 0], images[0, 0, ::-1])
  with pytest.raises(ValueError, match="square images"):
    rotation.rotations(jnp.zeros((2, 4, 6, 3)))


def _loss_grads(method, params, model_state, batch):
  grad = jax.jit(jax.grad(lambda p: method.loss(p, model_state, batch, jax.random.key(1), 0)[0]))
  return grad(params)


@pytest.mark.parametrize("config_module,task,head", [
    (rotation_config, "rotation", "head"), (relative_position_config, "position", "pair_head")])
def test_pretext_labels_reach_only_the_probe(config_module, task, head):
  """The pretext loss is self-supervised: the dataset's labels train the online probe alone."""
  config = config_module.get_config("quick")
  method = methods.build(config, methods.DataInfo(image_size=16, num_classes=10))
  variables = nn.unbox(method.init(jax.random.key(0)))
  params = variables.pop("params")
  rng = np.random.default_rng(1)
  batch = {"image": rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
           "label": rng.integers(0, 10, (8,), dtype=np.int32)}
  (loss, (metrics, new_state)) = method.loss(params, variables, batch, jax.random.key(1), 0)
  assert 0 <= float(metrics[f"{task}_acc"]) <= 1
  # The probe starts at zero, so its cross-entropy is log(10) and the total loss adds it.
  assert float(loss) == pytest.approx(float(metrics[f"{task}_loss"]) + np.log(10), rel=1e-5)
  assert jax.tree.structure(new_state) == jax.tree.structure(variables)
  grads = _loss_grads(method, params, variables, batch)
  relabelled = _loss_grads(method, params, variables, dict(batch, label=(batch["label"] + 1) % 10))
  for name in grads:
    same = all(jax.tree.leaves(jax.tree.map(np.array_equal, grads[name], relabelled[name])))
    assert same == (name != "online_probe"), name
  # The pretext head and the encoder are trained by the pretext loss.
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads[head])) > 0
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["encoder"])) > 0


def test_grid_patches_are_a_jittered_3x3_grid_with_gaps():
  patch, gap, jitter = 4, 3, 1
  size = relative_position.grid_span(patch, gap, jitter) + 3  # room for the grid's offset
  images = np.random.default_rng(2).normal(size=(64, size, size, 3)).astype(np.float32)
  patches, corners = relative_position.grid_patches(
      jax.random.key(3), jnp.asarray(images), patch_size=patch, gap=gap, jitter=jitter)
  corners = np.asarray(corners)
  assert patches.shape == (64, 9, patch, patch, 3) and corners.shape == (64, 9, 2)
  for b, i in [(0, 0), (5, 4), (63, 8), (17, 3)]:
    y, x = corners[b, i]
    np.testing.assert_array_equal(patches[b, i], images[b, y:y + patch, x:x + patch])
  assert corners.min() >= 0 and corners.max() <= size - patch
  # Row by row: each patch is one cell (patch + gap) right of / below its neighbour, give or
  # take twice the jitter, so patches never overlap or touch, and the jitter is really drawn.
  cells = corners.reshape(64, 3, 3, 2)
  right = cells[:, :, 1:, 1] - cells[:, :, :-1, 1]
  down = cells[:, 1:, :, 0] - cells[:, :-1, :, 0]
  for step in (right, down):
    assert step.min() >= patch + gap - 2 * jitter > patch and step.max() <= patch + gap + 2 * jitter
    assert len(np.unique(step)) == 2 * 2 * jitter + 1
  assert len(np.unique(corners[:, 0], axis=0)) > 1  # the grid moves between images
  with pytest.raises(ValueError, match="spans 20 pixels"):
    relative_position.grid_patches(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), patch_size=4,
                                   gap=2, jitter=2)


def test_colour_dropping_keeps_one_channel_and_fills_the_others_with_faint_noise():
  patches = jnp.asarray(np.random.default_rng(4).normal(size=(200, 5, 5, 3)) * 2, jnp.float32)
  dropped = np.asarray(relative_position.drop_colors(jax.random.key(5), patches))
  kept = [int(np.flatnonzero((dropped[i] == patches[i]).all(axis=(0, 1)))[0]) for i in range(200)]
  assert sorted(set(kept)) == [0, 1, 2]  # each channel is the kept one for some patches
  for i, c in enumerate(kept[:20]):
    others = np.delete(dropped[i], c, axis=-1)
    np.testing.assert_allclose(others.std(), 0.01 * float(patches[i, ..., c].std()), rtol=0.5)


def test_centre_neighbour_pairs_label_the_neighbours_in_reading_order():
  features = jnp.arange(2 * 9, dtype=jnp.float32).reshape(2, 9, 1)  # feature = 9b + grid index
  pairs, labels = relative_position.centre_neighbour_pairs(features)
  assert labels.tolist() == list(range(8)) * 2
  expected = [[9 * b + 4, 9 * b + i] for b in range(2) for i in (0, 1, 2, 3, 5, 6, 7, 8)]
  np.testing.assert_array_equal(pairs, expected)


def test_context_embedding_averages_a_centred_grid_in_single_channel_versions():
  config = relative_position_config.get_config("quick")  # 16 pixels: patches 4, gap 1, jitter 1
  method = methods.build(config, methods.DataInfo(image_size=16, num_classes=10))
  variables = nn.unbox(method.init(jax.random.key(0)))
  params = variables.pop("params")
  images = np.random.default_rng(6).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  features = jax.jit(lambda x: method.embed(params, variables, x))(images)
  assert features.shape == (2, 8 * 8) and features.dtype == jnp.float32  # ResNet-10, width 8
  x = np.asarray(augment.model_input(images, config.input_norm))
  encode = lambda patch: method.net.apply(  # noqa: E731
      {"params": params, **variables}, patch[None], method=relative_position.ContextNet.features)[0]
  for colour in (True, False):  # colour dropping on (the config's, jitted above) and off
    config.relative_position.color_dropping = colour
    got = (features if colour else
           methods.build(config, methods.DataInfo(16, 10)).embed(params, variables, images))
    for b in range(2):
      # The grid spans the whole image: patches at 1, 6 and 11 (the jitter's margin, no jitter).
      patches = [x[b, y:y + 4, z:z + 4] for y in (1, 6, 11) for z in (1, 6, 11)]
      if colour:
        patches = [np.where(np.arange(3) == c, p, 0) for p in patches for c in range(3)]
      want = np.mean([encode(p) for p in patches], axis=0)
      np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-5)
