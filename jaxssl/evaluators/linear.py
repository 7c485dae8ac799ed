"""Linear probe on frozen features: multinomial logistic regression.

Features are standardised with the training set's statistics. The L2 penalty is chosen among a
few values on a held-out fifth of the *training* features (never on the test set); the probe of
that penalty, trained on the other four fifths, is scored on the test features.

Speed: on CPU the cost is two memory-bound matmuls X @ W and X^T @ R per step, whatever the number
of columns of W. So the probes of all penalties train together as one (D, P * C) matrix, with the
analytic gradient of the cross-entropy and X^T stored once: raw-pixel probes (D = 3072) then cost
the same as one probe instead of one per penalty.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def fit_probes(x, y, weight_decays, *, num_classes, steps, lr=0.05):
  """Trains one logistic-regression probe per weight decay, all at once, full batch with Adam and
  a cosine schedule. Returns w (P, D, C), b (P, C) for P = len(weight_decays)."""
  n, d = x.shape
  p = weight_decays.shape[0]
  xt = x.T  # stored transposed once: X^T @ R is then a contiguous matmul
  onehot = jax.nn.one_hot(y, num_classes)
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
  params = {"w": jnp.zeros((d, p * num_classes)), "b": jnp.zeros((p * num_classes,))}

  def step(_, carry):
    params, opt_state = carry
    logits = (x @ params["w"] + params["b"]).reshape(n, p, num_classes)
    # d(mean cross-entropy)/d(logits) = (softmax - onehot) / n, for every probe at once.
    residual = ((jax.nn.softmax(logits, -1) - onehot[:, None, :]) / n).reshape(n, p * num_classes)
    decay = jnp.repeat(weight_decays, num_classes)
    grads = {"w": xt @ residual + 2 * decay * params["w"], "b": residual.sum(0)}
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params, _ = jax.lax.fori_loop(0, steps, step, (params, tx.init(params)))
  w = params["w"].reshape(d, p, num_classes).transpose(1, 0, 2)
  return w, params["b"].reshape(p, num_classes)


@jax.jit
def _accuracies(w, b, x, y):
  logits = jnp.einsum("nd,pdc->pnc", x, w) + b[:, None, :]
  return jnp.mean(jnp.argmax(logits, -1) == y[None], axis=-1)


def linear_top1(train_features, train_labels, test_features, test_labels, *, num_classes, steps=300):
  xtr = np.asarray(train_features, np.float32)
  mean, std = xtr.mean(0), xtr.std(0) + 1e-6
  xtr = jnp.asarray((xtr - mean) / std)
  xte = jnp.asarray((np.asarray(test_features, np.float32) - mean) / std)
  ytr, yte = jnp.asarray(train_labels), jnp.asarray(test_labels)
  n_fit = (len(xtr) * 4) // 5
  w, b = fit_probes(xtr[:n_fit], ytr[:n_fit], jnp.asarray(WEIGHT_DECAYS, jnp.float32),
                    num_classes=num_classes, steps=steps)
  best = int(jnp.argmax(_accuracies(w, b, xtr[n_fit:], ytr[n_fit:])))
  return float(_accuracies(w[best:best + 1], b[best:best + 1], xte, yte)[0])
