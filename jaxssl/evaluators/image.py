"""Image evaluator: kNN and linear probe of the method's `embed` on a held-out split.

It loads `eval.num_train` labelled training images (kNN bank / probe training set) and
`eval.num_test` held-out test images once, embeds them with the method's `embed` (sharded over
the mesh like training), and returns a flat dict `name -> number`. Baselines use the same code
path: a randomly initialised encoder (suffix "/random_init") and the raw pixels ("/raw_pixels").
A method that also classifies (`classify(params, model_state, images)` -> logits, e.g. finetune)
gets classifier/top1: its own head's accuracy on the held-out images. A masked autoencoder
(`reconstruct(params, model_state, images)`) gets plots/reconstructions.png at every evaluation.
"""
import functools

import jax
import numpy as np

from jaxssl import config_base, sharding
from jaxssl.data import pipeline
from jaxssl.evaluators import batching, knn, linear, plots


class Evaluator:

  def __init__(self, config, method, mesh, train_source, test_source):
    self.config, self.mesh = config, mesh
    size = config.data.image_size
    load = lambda source, num: pipeline.load_arrays(  # noqa: E731
        source, image_size=size, max_examples=num, bad_records=config.data.bad_records)
    self.train, self.test = load(train_source, config.eval.num_train), load(test_source,
                                                                            config.eval.num_test)
    self.num_classes = train_source.num_classes
    self.class_names = train_source.class_names
    self.batch_size = batching.round_batch_size(config.eval.batch_size, mesh)
    jit = functools.partial(jax.jit, out_shardings=sharding.replicated(mesh),
                            compiler_options=config_base.compiler_options(config))
    self._embed = jit(method.embed)
    self._classify = jit(method.classify) if hasattr(method, "classify") else None
    self._reconstruct = jit(method.reconstruct) if hasattr(method, "reconstruct") else None

  def features(self, params, model_state, images):
    """(N, D) float32 host features of uint8 images (N, H, W, 3)."""
    return batching.apply_in_batches(lambda b: self._embed(params, model_state, b["image"]),
                                     {"image": images}, self.mesh, self.batch_size)

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

  def evaluate(self, params, model_state, suffix="", plots_dir=None):
    """Metrics of the model (params, model_state); with plots_dir, also a scatter of its
    held-out features coloured by class (plots_dir/embeddings.png) and reconstructions."""
    test_features = self.features(params, model_state, self.test["image"])
    if plots_dir:
      plots.embedding_scatter(f"{plots_dir}/embeddings.png", test_features, self.test["label"],
                              self.class_names, "held-out image features")
      if self._reconstruct is not None:
        plots.reconstruction_figure(f"{plots_dir}/reconstructions.png",
                                    lambda x: self._reconstruct(params, model_state, x),
                                    self.test["image"], self.mesh)
    scores = self._scores(self.features(params, model_state, self.train["image"]), test_features,
                          suffix)
    if self._classify is not None:
      logits = batching.apply_in_batches(lambda b: self._classify(params, model_state, b["image"]),
                                         {"image": self.test["image"]}, self.mesh, self.batch_size)
      scores[f"classifier/top1{suffix}"] = float(np.mean(logits.argmax(-1) == self.test["label"]))
    return scores

  def input_baselines(self):
    """The same metrics on raw pixels."""
    flat = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0  # noqa: E731
    return self._scores(flat(self.train["image"]), flat(self.test["image"]), "/raw_pixels")
