"""jaxssl: self-supervised pretraining in JAX. Train with `python -m jaxssl.main`; use a trained
model with `jaxssl.load` (see jaxssl/pretrained.py)."""


def load(path, step=None):
  """The pretrained model of a workdir (latest checkpoint, or `step`) or of an export:
  `jaxssl.load(path).embed(x)` -> (N, D) NumPy features. See `jaxssl.pretrained`."""
  from jaxssl import pretrained  # Lazy: `import jaxssl` stays free of jax until a model is loaded.
  return pretrained.load(path, step)
