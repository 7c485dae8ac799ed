"""Evaluation on frozen features, chosen by `config.eval.name` and resolved by module path.

An evaluator module `jaxssl/evaluators/<name>.py` defines `Evaluator(config, method, mesh,
train_source, test_source)` with
  evaluate(params, model_state, suffix="", plots_dir=None) -> {metric + suffix: number}
      the model's metrics on held-out data; with plots_dir (final evaluation, process 0 only),
      also writes its figures there. Every process must call it: embedding runs on the mesh.
  input_baselines() -> {metric/<baseline>: number}
      the metrics that need no model (raw inputs), computed once per run.
Evaluators:
  image       kNN + linear probe of `method.embed` (images).
  multimodal  retrieval, zero-shot classification and linear probes of
              `method.embed_modalities` (video, audio, text).
Helper modules (knn, linear, retrieval, batching, plots) define no `Evaluator`.
"""
from jaxssl import plugins


def get(name):
  """The `Evaluator` class of jaxssl/evaluators/<name>.py."""
  return plugins.resolve("jaxssl.evaluators", name, "Evaluator", "config.eval.name")


def build(config, method, mesh, train_source, test_source):
  return get(config.eval.name)(config, method, mesh, train_source, test_source)
