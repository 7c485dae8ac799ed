"""Weighted k-nearest-neighbour classification on frozen features (Wu et al., "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination", CVPR 2018; the protocol of DINO/solo-learn).

Cosine similarity between L2-normalised features; each of the k nearest bank items votes for its
label with weight exp(similarity / temperature); the class with the largest summed weight wins.
"""
import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _normalize(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def knn_predict(bank, bank_labels, queries, *, num_classes, k=20, temperature=0.07, chunk=1024):
  """Predicted labels (Q,) for `queries` (Q, D) against `bank` (N, D) with labels (N,)."""
  bank = _normalize(jnp.asarray(bank, jnp.float32))
  bank_labels = jnp.asarray(bank_labels)
  k = min(k, bank.shape[0])

  @jax.jit
  def predict(q):
    sim = _normalize(q) @ bank.T
    top_sim, top_idx = jax.lax.top_k(sim, k)
    votes = jax.nn.one_hot(bank_labels[top_idx], num_classes) * jnp.exp(top_sim / temperature)[..., None]
    return jnp.argmax(votes.sum(axis=1), axis=-1)

  queries = np.asarray(queries, np.float32)
  return np.concatenate([np.asarray(predict(queries[i:i + chunk]))
                         for i in range(0, len(queries), chunk)])


def knn_top1(train_features, train_labels, test_features, test_labels, *, num_classes, k, temperature):
  pred = knn_predict(train_features, train_labels, test_features, num_classes=num_classes, k=k,
                     temperature=temperature)
  return float(np.mean(pred == np.asarray(test_labels)))
