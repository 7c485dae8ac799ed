"""Procedural "shapes" dataset: the class is an object's shape, everything else is a nuisance.

Why: a self-supervised method is only worth something if its features recover factors that raw
pixels hide. Here the label (the outline of one foreground object) is a small, position- and
rotation-free signal buried under large, label-independent variation, so a kNN / linear probe on
raw pixels is weak while the shape stays obvious to a human. A good SSL representation should
close most of that gap. Rendering is pure numpy, per record (~0.4 ms per 32x32 image on a
loaded 2-core machine), so the dataset needs no files and any record is a pure function of
(seed, split, index).

Generative factors of one record, all drawn from `np.random.default_rng([seed, split, index])`:

  label       uniform over the 10 classes in `CLASS_NAMES` (disc, square, triangle, star, cross,
              ring, half-disc, crescent, heart, arrow). Squares/diamonds, hexagons/discs etc. are
              avoided because full rotation or 32x32 resolution would make them ambiguous.
  background  two random RGB colours mixed, at a random 10-25% contrast, by a texture map in
              [0, 1]: one of stripes (random
              frequency, orientation, phase), checkerboard (random frequency, orientation, phase),
              linear gradient (random direction) or "blobs" (a product of two random
              low-frequency waves).
  distractors 0-1 one-pixel line segments and 0-2 plus-shaped dots at random places, in one
              random colour, under the object; independent of the label.
  object      diameter of its circumscribed circle uniform in 50%-90% of the image side, rotation
              uniform in +-30 degrees, centre uniform over the positions that keep (nearly) all of it inside,
              one random colour, replaced by a far one when too close to the background's mean
              colour (so the object never vanishes), mild random linear shading; edges are
              anti-aliased from a signed distance function.
  noise       additive uniform pixel noise, std uniform in [0, 0.035] (in [0, 1] units).
"""
import functools

import numpy as np

CLASS_NAMES = ("disc", "square", "triangle", "star", "cross", "ring", "half_disc", "crescent",
               "heart", "arrow")
NUM_CLASSES = len(CLASS_NAMES)
SPLIT_IDS = {"train": 0, "test": 1}

# Number of uniforms drawn per record; `render` slices them into named factors.
_NUM_UNIFORMS = 38


def _polygon_sdf(u, v, n, inner):
  """Signed distance to a regular n-gon (inner=cos(pi/n)) or n-pointed star (smaller inner).

  The plane is folded into one half-sector, where the boundary is the single edge from the
  inner vertex (inner, 0) to the outer vertex at radius 1; exact inside, close enough outside
  for anti-aliasing.
  """
  half = np.pi / n
  a = np.abs(np.mod(np.arctan2(v, u), 2 * half) - half)  # 0 at inner vertex, half at outer.
  rho = np.hypot(u, v)
  px, py = rho * np.cos(a), rho * np.sin(a)
  ex, ey = np.cos(half) - inner, np.sin(half)  # Edge direction, inner -> outer vertex.
  norm = np.hypot(ex, ey)
  return ((px - inner) * ey - py * ex) / norm


def _box_sdf(u, v, half_u, half_v):
  return np.maximum(np.abs(u) - half_u, np.abs(v) - half_v)


def _disc(u, v):
  return np.hypot(u, v) - 1.0


def _square(u, v):
  return _polygon_sdf(u, v, 4, np.cos(np.pi / 4))


def _triangle(u, v):
  # A triangle's centroid is off its circumcircle's centre; shift so it is centred in the box.
  return _polygon_sdf(u + 0.25, v, 3, np.cos(np.pi / 3))


def _star(u, v):
  return _polygon_sdf(u, v, 5, 0.42)


def _cross(u, v):
  return np.minimum(_box_sdf(u, v, 0.95, 0.3), _box_sdf(u, v, 0.3, 0.95))


def _ring(u, v):
  return np.abs(np.hypot(u, v) - 0.72) - 0.28


def _half_disc(u, v):
  v = v + 0.45
  return np.maximum(np.hypot(u, v) - 1.0, -v)


def _crescent(u, v):
  return np.maximum(np.hypot(u, v) - 1.0, 0.82 - np.hypot(u - 0.5, v))


def _heart(u, v):
  # A square standing on a corner with a disc on each of its two upper sides.
  v = v + 0.3
  lobe = 0.375
  diamond = (np.abs(u) + np.abs(v) - 0.75) / np.sqrt(2.0)
  return np.minimum(diamond, np.minimum(np.hypot(u - lobe, v - lobe),
                                        np.hypot(u + lobe, v - lobe)) - 0.53)


def _arrow(u, v):
  head = _polygon_sdf((u - 0.3) / 0.7, v / 0.7, 3, np.cos(np.pi / 3)) * 0.7
  return np.minimum(head, _box_sdf(u + 0.35, v, 0.6, 0.14))


_SDFS = (_disc, _square, _triangle, _star, _cross, _ring, _half_disc, _crescent, _heart, _arrow)
assert len(_SDFS) == NUM_CLASSES


# SDFs are evaluated once per class on a fine grid over [-_EXTENT, _EXTENT]^2 and looked up
# (nearest cell) per pixel: rotation/scale/translation then cost a gather instead of arctan2 etc.
# Every shape lies in the unit disc, so only a window of +-1.3 radii around the object's centre is
# rendered; the extent covers that window's corners (plus half a pixel) at any rotation for images
# of 8 pixels or more, so indices never need clipping.
_TEMPLATE_SIZE = 448
_EXTENT = 2.4
_WINDOW = 1.3
_MIN_IMAGE_SIZE = 8


@functools.lru_cache(maxsize=None)
def _template(label):
  c = np.linspace(-_EXTENT, _EXTENT, _TEMPLATE_SIZE, dtype=np.float32)
  u, v = np.meshgrid(c, c, indexing="xy")
  return _SDFS[label](u, v).astype(np.float32).ravel()


def _texture(kind, c, p):
  """Background mixing map in [0, 1] of the given kind; c: (S,) pixel centres in [0, 1].

  Every map is a function of the rotated coordinates (along, across), built as outer sums of
  1-D vectors so that each costs one full-image op.
  """
  cos, sin = np.cos(2 * np.pi * p[0]), np.sin(2 * np.pi * p[0])
  along = np.add.outer(c * sin, c * cos)  # Rows are y, columns x.
  if kind == 0:  # Stripes.
    return 0.5 + 0.5 * np.sin((4 * np.pi + 12 * np.pi * p[1]) * along + 6.3 * p[2])
  across = np.add.outer(c * cos, -c * sin)
  if kind == 1:  # Checkerboard.
    freq = 4 * np.pi + 8 * np.pi * p[1]
    return (np.sin(freq * along + 6.3 * p[2]) * np.sin(freq * across + 6.3 * p[3]) > 0).astype(
        np.float32)
  if kind == 2:  # Linear gradient.
    lo, hi = along.min(), along.max()
    return (along - lo) / (hi - lo)
  # Blobs: product of two low-frequency waves.
  return 0.5 + 0.5 * np.sin((1.4 + 3 * p[1]) * np.pi * along + 6.3 * p[2]) * np.sin(
      (1.4 + 3 * p[3]) * np.pi * across + 6.3 * p[1])


_DOT_OFFSETS = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], np.float32)


def _distractor_pixels(s, ends, num_lines, num_dots):
  """(n, 2) integer (x, y) pixels of `num_lines` lines and `num_dots` plus-shaped dots.

  Rasterised without anti-aliasing, by sampling points along each line: a handful of numpy calls
  however many distractors there are, where a per-pixel distance test costs dozens (numpy call
  overhead, not arithmetic, dominates at 32x32). `ends` (5, 2) are uniforms, mapped to line
  ends in [0, s) and dot centres in [1, s - 1) so that no pixel needs clipping.
  """
  t = np.arange(2 * s, dtype=np.float32)[None, :, None] / (2 * s - 1)
  start, end = ends[:num_lines, None] * s, ends[2:2 + num_lines, None] * s
  lines = (start + t * (end - start)).reshape(-1, 2)
  dots = (ends[4 - num_dots:4, None] * (s - 2) + 1 + _DOT_OFFSETS).reshape(-1, 2)
  return np.concatenate([lines, dots]).astype(np.intp)


def render(seed: int, split: str, index: int, image_size: int):
  """Returns (image uint8 (S, S, 3), label int) of record `index`; see the module docstring.

  Works channels-first internally: numpy broadcasts over a trailing axis of 3 several times
  slower than over a trailing (S, S) plane.
  """
  s = image_size
  if s < _MIN_IMAGE_SIZE:
    raise ValueError(f"shapes needs image_size >= {_MIN_IMAGE_SIZE}, got {s}")
  rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
  u = rng.random(_NUM_UNIFORMS + 3 * s * s, dtype=np.float32)
  u, noise = u[:_NUM_UNIFORMS], u[_NUM_UNIFORMS:].reshape(3, s, s)
  label = int(float(u[0]) * NUM_CLASSES)
  pix = np.arange(s, dtype=np.float32) + 0.5  # Pixel centres.
  colours = u[6:18].reshape(4, 3, 1, 1)  # Background 0 and 1, distractors, object.

  # Background: two colours mixed by a texture at 10-25% contrast, so that the object, not the
  # texture, is the most distinctive structure of the image (a high-contrast texture is a shortcut
  # for instance discrimination: both views of an image share it).
  tex = _texture(int(float(u[1]) * 4), pix / s, u[2:6])
  contrast = 0.1 + 0.15 * float(u[37])
  img = tex * contrast * (colours[1] - colours[0]) + colours[0]

  # Distractors: label-independent lines and dots, under the object.
  num_lines, num_dots = int(float(u[18]) * 2), int(float(u[19]) * 3)
  if num_lines + num_dots:
    x, y = _distractor_pixels(s, u[20:30].reshape(5, 2), num_lines, num_dots).T
    img[:, y, x] = colours[2, :, 0]

  # Object: random size, rotation and position; colour pushed away from the background mean.
  radius = (0.5 + 0.4 * float(u[30])) * s / 2
  angle = (np.pi / 3) * (float(u[31]) - 0.5)  # +-30 degrees: every class keeps its look
  margin = 0.85 * radius
  cx, cy = (margin + (s - 2 * margin) * u[32:34]).tolist()
  half = _WINDOW * radius
  x0, x1 = max(int(cx - half), 0), min(int(cx + half) + 1, s)
  y0, y1 = max(int(cy - half), 0), min(int(cy + half) + 1, s)
  x, y = pix[x0:x1] - cx, pix[y0:y1] - cy
  # Template cell of every window pixel: rotate, scale, shift (outer sums of 1-D vectors).
  scale = (_TEMPLATE_SIZE - 1) / (2 * _EXTENT)
  cos, sin = np.cos(angle) * scale / radius, np.sin(angle) * scale / radius
  offset = _EXTENT * scale + 0.5
  iu = np.add.outer(y * sin + offset, x * cos).astype(np.intp)
  iv = np.add.outer(y * cos + offset, -x * sin).astype(np.intp)
  alpha = np.clip(0.5 - radius * _template(label)[iv * _TEMPLATE_SIZE + iu], 0.0, 1.0)
  bg_mean = (colours[0] + colours[1]) / 2  # Every texture averages to about 0.5.
  fg = colours[3]
  if np.abs(fg - bg_mean).sum() < 0.9:
    fg = np.mod(bg_mean + 0.5, 1.0)
  shading = np.add.outer(y * (0.1 * float(u[34]) / s), x * (0.1 * float(u[35]) / s))
  window = img[:, y0:y1, x0:x1]
  window += alpha * (fg + shading - window)

  noise *= 0.12 * float(u[36])  # Uniform noise in [0, 0.12) (std up to 0.035), centred below.
  image = np.clip((img + noise) * 255 + (0.5 - 0.06 * float(u[36]) * 255), 0, 255)
  return image.transpose(1, 2, 0).astype(np.uint8, order="C"), label
