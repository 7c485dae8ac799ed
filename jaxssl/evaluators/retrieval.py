"""Cross-modal retrieval and zero-shot classification by cosine similarity (NumPy, host side).

Ties are broken deterministically, as a stable sort by decreasing similarity would: among
gallery items equally similar to a query, the lower index ranks first. A collapsed model (all
embeddings equal) therefore scores R@1 = 1/N on average, not 1.
"""
import numpy as np

RECALL_AT = (1, 5, 10)


def normalize(x):
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def ranks(queries, gallery, chunk=1024) -> np.ndarray:
  """int64 (N,): 1-based rank of gallery[i] for queries[i] among all N gallery items."""
  q, g = normalize(queries), normalize(gallery)
  n = len(q)
  out = np.empty(n, np.int64)
  for lo in range(0, n, chunk):
    rows = np.arange(lo, min(lo + chunk, n))
    sim = q[rows] @ g.T  # The positive comes from the same product as the rest: ties are exact.
    pos = sim[np.arange(len(rows)), rows][:, None]
    earlier = np.arange(n)[None, :] < rows[:, None]
    out[rows] = 1 + (sim > pos).sum(1) + ((sim == pos) & earlier).sum(1)
  return out


def summary(prefix, r) -> dict:
  """{prefix/R@k: fraction of ranks <= k, prefix/median_rank} of ranks r."""
  out = {f"{prefix}/R@{k}": float(np.mean(r <= k)) for k in RECALL_AT}
  out[f"{prefix}/median_rank"] = float(np.median(r))
  return out


def top_k(queries, gallery, k) -> np.ndarray:
  """int (Q, k): the k most similar gallery indices per query, ties to the lower index."""
  sim = normalize(queries) @ normalize(gallery).T
  return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def class_embeddings(prompt_embeddings, prompt_class, num_classes) -> np.ndarray:
  """(C, D): per class, the normalised mean of its normalised prompt embeddings (ensembling)."""
  e = normalize(prompt_embeddings)
  sums = np.zeros((num_classes, e.shape[1]), np.float32)
  np.add.at(sums, np.asarray(prompt_class), e)
  return normalize(sums)


def zero_shot_top1(embeddings, class_embedding, labels) -> float:
  """Accuracy of predicting the class whose prompt embedding is most similar (first on ties)."""
  pred = np.argmax(normalize(embeddings) @ class_embedding.T, axis=1)
  return float(np.mean(pred == np.asarray(labels)))
