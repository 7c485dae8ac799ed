"""Evaluation figures: example retrievals, a 2-D map of embeddings coloured by class, and masked
autoencoders' reconstructions."""
import os

import numpy as np

from jaxssl.evaluators import batching, retrieval

_FRAMES_PER_STRIP = 4
_RECONSTRUCTION_EXAMPLES = 8
RECONSTRUCTION_COLUMNS = ("input", "masked", "reconstruction")


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def frame_strip(video) -> np.ndarray:
  """uint8 (S, k*(S+1)-1, 3): up to 4 evenly spaced frames of a (T, S, S, 3) clip, side by side
  with 1-pixel white gaps (the clip's motion reads left to right)."""
  t = video.shape[0]
  picks = np.unique(np.linspace(0, t - 1, min(_FRAMES_PER_STRIP, t)).round().astype(int))
  gap = np.full((video.shape[1], 1, 3), 255, np.uint8)
  parts = []
  for i in picks:
    parts += [video[i], gap]
  return np.concatenate(parts[:-1], axis=1)


def retrieval_examples(path, captions, videos, top, correct, ranks):
  """One row per query: its caption, its top-k clips as frame strips (the correct one framed in
  green) and, in the last column, the clip it describes with that clip's rank.

  captions: Q str; videos (N, T, S, S, 3) uint8; top (Q, k) gallery indices; correct (Q,)
  index of each query's clip; ranks (Q,) its rank.
  """
  plt = _pyplot()
  q, k = top.shape
  fig, axes = plt.subplots(q, k + 1, figsize=(2.3 * (k + 1), 0.95 * q + 0.5), squeeze=False)
  for row in range(q):
    shown = list(top[row]) + [correct[row]]
    for col, index in enumerate(shown):
      ax = axes[row, col]
      ax.imshow(frame_strip(videos[index]), interpolation="nearest")
      ax.set_xticks([]), ax.set_yticks([])
      hit = index == correct[row]
      label = f"#{col + 1}" if col < k else f"its clip: rank {int(ranks[row])}"
      ax.set_xlabel(label, fontsize=7, color="green" if hit else "black", labelpad=1)
      for spine in ax.spines.values():
        spine.set_color("limegreen" if hit else "lightgrey")
        spine.set_linewidth(3 if hit else 1)
    axes[row, 0].set_title(f'"{captions[row]}"', fontsize=8, loc="left")
  fig.suptitle("text -> video retrieval: top clips per caption (frames left to right; "
               "green = the clip the caption describes)", fontsize=9)
  fig.tight_layout()
  _save(fig, path)


def embedding_scatter(path, features, labels, class_names, title):
  """2-D PCA of the L2-normalised features, one colour per class.

  PCA rather than t-SNE: t-SNE of 1,000 points takes 10-50 s on 2 cores, a visible share of a
  10-minute run; the first two principal components already show whether classes separate.
  """
  plt = _pyplot()
  x = retrieval.normalize(features)
  x = x - x.mean(0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  xy = x @ vt[:2].T
  fig, ax = plt.subplots(figsize=(6, 5))
  cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
  for c, name in enumerate(class_names):
    sel = np.asarray(labels) == c
    ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(c % cmap.N), label=name)
  ax.set(title=f"{title}: PCA, coloured by class", xlabel="PC 1", ylabel="PC 2")
  ax.legend(fontsize=7, markerscale=2, loc="best")
  fig.tight_layout()
  _save(fig, path)


def reconstruction_figure(path, reconstruct, images, mesh):
  """Draws `reconstruct` (a jitted method's: uint8 images or clips (B, ...) -> {column: float
  images in [0, 1]} for RECONSTRUCTION_COLUMNS) on the first held-out examples."""
  n = min(len(images), _RECONSTRUCTION_EXAMPLES)
  out = batching.apply_in_batches(lambda b: reconstruct(b["image"]), {"image": images[:n]}, mesh,
                                  batching.round_batch_size(n, mesh))
  reconstructions(path, {k: (np.clip(out[k], 0, 1) * 255).round().astype(np.uint8)
                         for k in RECONSTRUCTION_COLUMNS})


def reconstructions(path, columns: dict):
  """A grid of masked-autoencoder examples, one row per example and one column per entry of
  `columns` (e.g. input | masked | reconstruction): uint8 images (N, H, W, 3) or clips
  (N, T, H, W, 3), shown as frame strips."""
  plt = _pyplot()
  names, arrays = list(columns), [np.asarray(a) for a in columns.values()]
  rows = len(arrays[0])
  as_image = lambda x: frame_strip(x) if x.ndim == 4 else x  # noqa: E731
  width = as_image(arrays[0][0]).shape[1] / as_image(arrays[0][0]).shape[0]
  fig, axes = plt.subplots(rows, len(names), squeeze=False,
                           figsize=(1.6 * width * len(names), 1.6 * rows))
  for r in range(rows):
    for c, (name, array) in enumerate(zip(names, arrays)):
      ax = axes[r, c]
      ax.imshow(as_image(array[r]), interpolation="nearest")
      ax.set_xticks([]), ax.set_yticks([])
      if r == 0:
        ax.set_title(name, fontsize=9)
  fig.tight_layout()
  _save(fig, path)


def _save(fig, path):
  import matplotlib.pyplot as plt
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
