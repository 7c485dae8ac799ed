"""Evaluation on frozen features: kNN and linear probe on a held-out split, with baselines.

The evaluator loads `eval.num_train` labelled training images (kNN bank / probe training set) and
`eval.num_test` held-out test images once, embeds them with the method's `embed` (sharded over the
mesh like training), and returns a flat dict `name -> number`. Baselines use the same code path:
a randomly initialised encoder (suffix "/random_init") and the raw pixels ("/raw_pixels").
"""
import jax
import numpy as np

from jaxssl import sharding
from jaxssl.data import pipeline
from jaxssl.evaluators import knn, linear


class Evaluator:

  def __init__(self, config, method, mesh, train_source, test_source):
    self.config, self.mesh = config, mesh
    size = config.data.image_size
    self.train = pipeline.load_arrays(train_source, image_size=size, max_examples=config.eval.num_train)
    self.test = pipeline.load_arrays(test_source, image_size=size, max_examples=config.eval.num_test)
    self.num_classes = train_source.num_classes
    # Eval batches are split over every device, so their size must be a multiple of the count.
    self.batch_size = -(-config.eval.batch_size // mesh.size) * mesh.size
    self._embed = jax.jit(method.embed, out_shardings=sharding.replicated(mesh))

  def features(self, params, model_state, images):
    """(N, D) float32 host features; the last batch is padded and the padding dropped."""
    n, bs = len(images), self.batch_size
    padded = np.concatenate([images, np.zeros((-n % bs,) + images.shape[1:], images.dtype)])
    out_sharding = sharding.batch_sharding(self.mesh, images.ndim)
    chunks = []
    for i in range(0, len(padded), bs):
      chunk = padded[i:i + bs]
      # Every process holds the whole eval set, so each device slice is cut from local memory.
      x = jax.make_array_from_callback(chunk.shape, out_sharding, lambda idx, c=chunk: c[idx])
      chunks.append(np.asarray(self._embed(params, model_state, x)))
    return np.concatenate(chunks)[:n]

  def _scores(self, train_features, test_features, suffix=""):
    kw = dict(num_classes=self.num_classes)
    ev = self.config.eval
    return {
        f"knn/top1{suffix}": knn.knn_top1(train_features, self.train["label"], test_features,
                                          self.test["label"], k=ev.knn_k,
                                          temperature=ev.knn_temperature, **kw),
        f"linear/top1{suffix}": linear.linear_top1(train_features, self.train["label"], test_features,
                                                   self.test["label"], steps=ev.linear_steps, **kw),
    }

  def evaluate(self, params, model_state, suffix=""):
    return self._scores(self.features(params, model_state, self.train["image"]),
                        self.features(params, model_state, self.test["image"]), suffix)

  def raw_pixels(self):
    flat = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0
    return self._scores(flat(self.train["image"]), flat(self.test["image"]), "/raw_pixels")
