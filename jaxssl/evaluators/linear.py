"""Linear probe on frozen features: multinomial logistic regression.

Features are standardised with the training set's statistics; the classifier is trained full-batch
with Adam and a cosine learning rate. The L2 penalty is chosen among a few values on a held-out
fifth of the *training* features (never on the test set), then the probe is retrained on all
training features and scored on the test features.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit(x, y, weight_decay, *, num_classes, steps, lr=0.05):
  params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))

  def loss_fn(p):
    logits = x @ p["w"] + p["b"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return ce + weight_decay * jnp.sum(jnp.square(p["w"]))

  def step(_, carry):
    p, opt_state = carry
    grads = jax.grad(loss_fn)(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  params, _ = jax.lax.fori_loop(0, steps, step, (params, tx.init(params)))
  return params


def _accuracy(params, x, y):
  return float(jnp.mean(jnp.argmax(x @ params["w"] + params["b"], -1) == y))


def linear_top1(train_features, train_labels, test_features, test_labels, *, num_classes, steps=300):
  xtr = np.asarray(train_features, np.float32)
  mean, std = xtr.mean(0), xtr.std(0) + 1e-6
  xtr = jnp.asarray((xtr - mean) / std)
  xte = jnp.asarray((np.asarray(test_features, np.float32) - mean) / std)
  ytr, yte = jnp.asarray(train_labels), jnp.asarray(test_labels)

  n_fit = (len(xtr) * 4) // 5
  val = [_accuracy(_fit(xtr[:n_fit], ytr[:n_fit], wd, num_classes=num_classes, steps=steps),
                   xtr[n_fit:], ytr[n_fit:]) for wd in WEIGHT_DECAYS]
  best = WEIGHT_DECAYS[int(np.argmax(val))]
  return _accuracy(_fit(xtr, ytr, best, num_classes=num_classes, steps=steps), xte, yte)
