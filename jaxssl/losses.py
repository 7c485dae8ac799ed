"""Self-supervised losses as pure functions, one per paper.

Conventions shared by every function here:
- Inputs are batched arrays whose leading axis is the **global** batch. Under `jax.jit` with a
  sharded batch, XLA inserts the cross-device collectives, so a loss written over the whole batch
  is automatically the global-batch loss (the 1-device and N-device results agree up to float
  reassociation).
- All arithmetic is done in float32 whatever the input dtype (bf16 activations are cast first):
  the logsumexp of contrastive logits loses too much precision in bf16.
- Each docstring names the paper, the direction(s) computed and the scale, so methods compose
  symmetric variants themselves.
"""
import jax
import jax.numpy as jnp


def l2_normalize(x, axis=-1, eps=1e-12):
  """x / max(||x||, eps), the normalisation used by SimCLR/MoCo (torch.nn.functional.normalize)."""
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
  return x / jnp.maximum(norm, eps)


def nt_xent(z1, z2, temperature=0.1):
  """NT-Xent, SimCLR's loss (Chen et al., ICML 2020, eq. 1 and Alg. 1).

  z1, z2: (N, D) projections of two views of the same N examples. The 2N vectors are L2-normalised;
  for each of the 2N anchors the positive is the other view of the same example and the negatives
  are the remaining 2N - 2 vectors (the anchor itself is excluded from the denominator):

    l(i, j) = -log( exp(s_ij / t) / sum_{k != i} exp(s_ik / t) ),   s = cosine similarity

  Returns the mean over all 2N anchors (Alg. 1's 1/(2N) sum over both orderings), a float32 scalar.
  """
  if z1.shape != z2.shape or z1.ndim != 2:
    raise ValueError(f"nt_xent expects two (N, D) arrays of equal shape, got {z1.shape}, {z2.shape}")
  n = z1.shape[0]
  z = l2_normalize(jnp.concatenate([z1, z2], axis=0))
  logits = (z @ z.T) / temperature
  # The anchor's similarity with itself is removed from the softmax, not just from the labels.
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
  positive = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(0, n)])
  log_prob = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_prob, positive[:, None], axis=-1))


def contrastive_accuracy(z1, z2):
  """Fraction of anchors in z1 whose nearest z2 (cosine) is their own positive: a cheap training
  signal that, unlike the loss value, is comparable across batch sizes and temperatures."""
  sim = l2_normalize(z1) @ l2_normalize(z2).T
  return jnp.mean(jnp.argmax(sim, axis=-1) == jnp.arange(z1.shape[0]))


# Matmuls of the losses below run at full float32 precision: on GPU/TPU the DEFAULT precision of an
# f32 matmul may be TF32/bf16 passes, whose ~1e-3 relative error is amplified by 1/temperature.
_HIGHEST = jax.lax.Precision.HIGHEST


def _check_pair(name, a, b):
  if a.ndim != 2 or a.shape != b.shape:
    raise ValueError(f"{name} expects two (N, D) arrays of equal shape, got {a.shape}, {b.shape}")


def _check_batch_statistics(name, n):
  if n < 2:
    raise ValueError(f"{name} needs a batch of at least 2 examples to compute per-feature batch "
                     f"statistics, got N={n}")


def _cross_entropy(logits, labels):
  """Mean over rows of -log softmax(logits)[label]."""
  log_prob = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_prob, labels[:, None], axis=-1))


def info_nce(query, key, queue=None, temperature=0.2):
  """InfoNCE as used by MoCo (He et al., CVPR 2020, eq. 1; MoCo v2, Chen et al., 2020; MoCo v3,
  Chen, Xie & He, ICCV 2021, Alg. 1).

  query, key: (N, D); queue: (K, D) or None. All vectors are L2-normalised; the positive of query
  i is key i.
  - With a queue (MoCo v1/v2): logits_i = [q_i.k_i, q_i.queue^T] / T (1 + K columns), label 0.
  - Without (MoCo v3): the other keys of the batch are the negatives: logits = q.k^T / T (N x N),
    labels arange(N). MoCo v3's extra factor 2T on the loss is NOT applied here.
  Returns the cross-entropy averaged over the N queries, a float32 scalar. One direction only:
  `key` is used as given (the caller applies stop_gradient to the momentum encoder's output).
  """
  _check_pair("info_nce", query, key)
  q, k = l2_normalize(query), l2_normalize(key)
  n = q.shape[0]
  if queue is None:
    logits = jnp.matmul(q, k.T, precision=_HIGHEST) / temperature
    return _cross_entropy(logits, jnp.arange(n))
  if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
    raise ValueError(f"info_nce expects a (K, D) queue with D={q.shape[1]}, got {queue.shape}")
  positive = jnp.sum(q * k, axis=-1, keepdims=True)
  negative = jnp.matmul(q, l2_normalize(queue).T, precision=_HIGHEST)
  logits = jnp.concatenate([positive, negative], axis=1) / temperature
  return _cross_entropy(logits, jnp.zeros((n,), jnp.int32))


def mil_nce(video, text, negatives=None, negatives_valid=None):
  """MIL-NCE (Miech et al., "End-to-End Learning of Visual Representations from Uncurated
  Instructional Videos", CVPR 2020, eq. 1 and the authors' reference loss).

  video: (B, D); text: (B, K, D), K candidate positives (captions/narrations) per clip. With
  scores x[i, j, k] = video_i . text_{j,k}, the loss of clip i is

    log sum_{j,k} exp(x[i,j,k]) + exp(x[j,i,k])   -   log sum_k exp(x[i,i,k])

  i.e. one softmax whose 2BK candidates are clip i against every caption and every clip against
  i's captions (i's own positives appear in both halves, so twice); the numerator pools i's K
  positives (multiple-instance). Returns the mean over the B clips, a float32 scalar. Raw dot
  products: no normalisation or temperature inside; callers that want cosines over a temperature
  (MMV) pass l2_normalize(video) / temperature and l2_normalize(text). With K = 1 this is MMV's
  NCE between two modalities (both directions in one denominator). Symmetric in the roles of
  clips and captions; no stop_gradient.

  negatives: optional (Q, D) extra captions that describe no clip of the batch (e.g. earlier
  batches' captions, `jaxssl.methods.mmv`'s caption queue); each adds exp(video_i . negative_q)
  to every clip's denominator (the clip -> caption direction only: they have no clip).
  negatives_valid: optional (Q,) bool; False rows are left out (an unfilled queue's).
  """
  if video.ndim != 2 or text.ndim != 3 or text.shape[0] != video.shape[0] or (
      text.shape[2] != video.shape[1]):
    raise ValueError(f"mil_nce expects video (B, D) and text (B, K, D), got {video.shape}, "
                     f"{text.shape}")
  x = jnp.einsum("id,jkd->ijk", video.astype(jnp.float32), text.astype(jnp.float32),
                 precision=_HIGHEST)
  b = x.shape[0]
  positive = jax.nn.logsumexp(x[jnp.arange(b), jnp.arange(b)], axis=-1)
  # Row i of `both`: x[i, :, :] then x[:, i, :], flattened to the 2BK candidates of clip i.
  both = jnp.concatenate([x, jnp.swapaxes(x, 0, 1)], axis=1).reshape(b, -1)
  if negatives is not None:
    if negatives.ndim != 2 or negatives.shape[1] != video.shape[1]:
      raise ValueError(f"mil_nce expects negatives (Q, {video.shape[1]}), got {negatives.shape}")
    extra = jnp.matmul(video.astype(jnp.float32), negatives.astype(jnp.float32).T,
                       precision=_HIGHEST)
    if negatives_valid is not None:
      extra = jnp.where(negatives_valid[None], extra, -jnp.inf)
    both = jnp.concatenate([both, extra], axis=1)
  return jnp.mean(jax.nn.logsumexp(both, axis=-1) - positive)


def _cosine(a, b):
  return jnp.sum(l2_normalize(a) * l2_normalize(b), axis=-1)


def byol(prediction, target):
  """BYOL's regression loss (Grill et al., NeurIPS 2020, eq. 2):
  || p/|p| - z/|z| ||^2 = 2 - 2 cos(p, z).

  prediction, target: (N, D). Returns the mean over the N examples (range [0, 4]), a float32
  scalar. One direction only (the paper's symmetrised loss is byol(p1, z2) + byol(p2, z1)); no
  stop_gradient inside, the caller applies it to the target network's output.
  """
  _check_pair("byol", prediction, target)
  return jnp.mean(2.0 - 2.0 * _cosine(prediction, target))


def simsiam(prediction, target):
  """SimSiam's loss (Chen & He, CVPR 2021, eq. 1): negative cosine similarity D(p, z) = -cos(p, z).

  prediction, target: (N, D). Returns the mean over the N examples (range [-1, 1]), a float32
  scalar. One direction only (the paper uses D(p1, z2)/2 + D(p2, z1)/2); the caller applies
  stop_gradient to the target.
  """
  _check_pair("simsiam", prediction, target)
  return -jnp.mean(_cosine(prediction, target))


def _batch_standardize(z, eps):
  z = z.astype(jnp.float32)
  centred = z - jnp.mean(z, axis=0)
  return centred / jnp.sqrt(jnp.mean(jnp.square(centred), axis=0) + eps)


def _off_diagonal(c):
  return jnp.where(jnp.eye(c.shape[0], dtype=bool), 0.0, c)


def barlow_twins(z1, z2, lambda_offdiag=5e-3):
  """Barlow Twins (Zbontar et al., ICML 2021, eq. 1 and Alg. 1).

  z1, z2: (N, D), N >= 2. Each feature is standardised over the batch as BatchNorm without affine
  in training mode does: (z - mean) / sqrt(var + 1e-5), population (biased) variance, eps 1e-5 =
  torch's BatchNorm default. With C = z1n^T z2n / N (D x D cross-correlation):

    loss = sum_i (1 - C_ii)^2 + lambda_offdiag * sum_{i != j} C_ij^2

  a float32 scalar, a sum over features (it grows with D; not averaged). Symmetric in z1, z2.
  """
  _check_pair("barlow_twins", z1, z2)
  n = z1.shape[0]
  _check_batch_statistics("barlow_twins", n)
  c = jnp.matmul(_batch_standardize(z1, 1e-5).T, _batch_standardize(z2, 1e-5),
                 precision=_HIGHEST) / n
  on_diag = jnp.sum(jnp.square(1.0 - jnp.diagonal(c)))
  off_diag = jnp.sum(jnp.square(_off_diagonal(c)))
  return on_diag + lambda_offdiag * off_diag


def vicreg_terms(z1, z2):
  """The three unweighted VICReg terms (Bardes, Ponce & LeCun, ICLR 2022, eqs. 1-6 and the
  reference code's `VICReg.forward`), as a dict of float32 scalars:

  - "invariance": mean squared error over the N x D entries.
  - "variance": per branch mean over features of relu(1 - sqrt(var + 1e-4)), var unbiased
    (ddof=1); the two branches averaged.
  - "covariance": per branch sum of the squared off-diagonal entries of the covariance
    (centred, divided by N - 1), divided by D; the two branches summed.

  z1, z2: (N, D), N >= 2.
  """
  _check_pair("vicreg", z1, z2)
  n, d = z1.shape
  _check_batch_statistics("vicreg", n)
  x, y = z1.astype(jnp.float32), z2.astype(jnp.float32)
  invariance = jnp.mean(jnp.square(x - y))

  def std_and_cov(z):
    z = z - jnp.mean(z, axis=0)
    std = jnp.sqrt(jnp.sum(jnp.square(z), axis=0) / (n - 1) + 1e-4)
    cov = jnp.matmul(z.T, z, precision=_HIGHEST) / (n - 1)
    return jnp.mean(jax.nn.relu(1.0 - std)), jnp.sum(jnp.square(_off_diagonal(cov))) / d

  std_x, cov_x = std_and_cov(x)
  std_y, cov_y = std_and_cov(y)
  return {"invariance": invariance, "variance": (std_x + std_y) / 2, "covariance": cov_x + cov_y}


def vicreg(z1, z2, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
  """VICReg loss (Bardes et al., ICLR 2022, eq. 6): the weighted sum
  sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance of `vicreg_terms`
  (defaults are the paper's lambda = mu = 25, nu = 1). z1, z2: (N, D), N >= 2; float32 scalar.
  """
  t = vicreg_terms(z1, z2)
  return sim_coeff * t["invariance"] + std_coeff * t["variance"] + cov_coeff * t["covariance"]


def dino(student_logits, teacher_logits, center, student_temperature, teacher_temperature):
  """DINO's loss for one (student view, teacher view) pair (Caron et al., ICCV 2021, eq. 1-2 and
  Alg. 1): H(P_t, P_s) with P_t = softmax((teacher - center) / T_t), log P_s =
  log_softmax(student / T_s).

  student_logits, teacher_logits: (N, K); center: (K,) or (1, K). Returns the cross-entropy summed
  over the K dimensions and averaged over the N examples, a float32 scalar. No stop_gradient
  inside (the caller stops it on the teacher) and the center is not updated here.
  """
  _check_pair("dino", student_logits, teacher_logits)
  k = student_logits.shape[1]
  if center.size != k or center.shape[-1] != k:
    raise ValueError(f"dino expects a center of shape ({k},) or (1, {k}), got {center.shape}")
  teacher = jax.nn.softmax(
      (teacher_logits.astype(jnp.float32) - center.reshape(1, k).astype(jnp.float32))
      / teacher_temperature, axis=-1)
  log_student = jax.nn.log_softmax(
      student_logits.astype(jnp.float32) / student_temperature, axis=-1)
  return jnp.mean(-jnp.sum(teacher * log_student, axis=-1))


def sinkhorn_knopp(scores, epsilon=0.05, iterations=3):
  """SwAV's equipartitioned codes (Caron et al., NeurIPS 2020, sec. 3.1 and the reference code's
  `distributed_sinkhorn`).

  scores: (B, K) sample-prototype scores (cosines in SwAV) of the batch passed in, which should be
  the GLOBAL batch: under jit with a sharded input the sums below are global (no psum needed).
  Q = exp(scores / epsilon)^T (K, B), normalised to total mass 1, then `iterations` rounds
  of: rows (each prototype gets mass 1/K), columns (each sample gets mass 1/B). Returns (B, K)
  float32 codes scaled by B, so each sample's codes sum to 1 and each prototype's column sum is
  approximately B/K (exactly after convergence). The global max of scores / epsilon is subtracted
  before exp (an overall factor that the first normalisation removes), so large scores do not
  overflow; a spread of scores / epsilon beyond ~80 can still underflow, as in SwAV's code.
  Differentiable (for a Python-int `iterations`); the caller applies stop_gradient to the codes, as
  SwAV does.
  """
  if scores.ndim != 2:
    raise ValueError(f"sinkhorn_knopp expects (B, K) scores, got {scores.shape}")
  b, k = scores.shape
  logits = scores.astype(jnp.float32) / epsilon
  q = jnp.exp(logits - jnp.max(logits)).T
  q = q / jnp.sum(q)

  def one_round(_, q):
    q = q / jnp.sum(q, axis=1, keepdims=True) / k
    return q / jnp.sum(q, axis=0, keepdims=True) / b

  # A loop, not unrolled: the compiled size does not grow with `iterations`.
  q = jax.lax.fori_loop(0, iterations, one_round, q)
  return (q * b).T


def swav(scores_a, codes_b, temperature=0.1):
  """SwAV's swapped-prediction loss for one direction (Caron et al., NeurIPS 2020, eq. 2-3):
  predict view b's codes from view a's scores.

  scores_a: (B, K) prototype scores of view a; codes_b: (B, K) codes of view b (from
  `sinkhorn_knopp`; the caller applies stop_gradient). Returns
  mean_b -sum_k codes_b[b, k] * log_softmax(scores_a / temperature)[b, k], a float32 scalar.
  """
  _check_pair("swav", scores_a, codes_b)
  log_p = jax.nn.log_softmax(scores_a.astype(jnp.float32) / temperature, axis=-1)
  return jnp.mean(-jnp.sum(codes_b.astype(jnp.float32) * log_p, axis=-1))


def mae_target(patches, norm_pix=True, channels=None):
  """The reconstruction target of masked autoencoders, float32, same shape as patches (N, L, P).

  norm_pix (MAE, He et al. CVPR 2022, "normalized pixels"): each patch minus its mean, divided by
  sqrt(unbiased variance + 1e-6), the statistics over all P values of the patch.
  channels=C (VideoMAE, Tong et al. NeurIPS 2022): each channel of each tubelet normalised
  separately, (x - mean) / (unbiased std + 1e-6), P being laid out as (..., C). None: MAE's form.
  """
  target = patches.astype(jnp.float32)
  if not norm_pix:
    return target
  if channels:
    n, length, p = target.shape
    t = target.reshape(n, length, p // channels, channels)
    t = (t - t.mean(axis=2, keepdims=True)) / (jnp.sqrt(t.var(axis=2, ddof=1, keepdims=True))
                                               + 1e-6)
    return t.reshape(n, length, p)
  mean = target.mean(axis=-1, keepdims=True)
  return (target - mean) / jnp.sqrt(target.var(axis=-1, ddof=1, keepdims=True) + 1e-6)


def mae(pred, target, mask, norm_pix=True, channels=None):
  """MAE's loss: mean squared error per patch, averaged over the masked patches only.

  pred, target: (N, L, P) predicted and true patches (pixels in the `patchify` order); mask
  (N, L), 1 = masked (the only patches that count). The target goes through `mae_target`
  (norm_pix, VideoMAE's per-channel form with `channels`); pred is compared as it is. With no
  masked patch at all the loss is 0 (the reference code would divide by zero).
  """
  if pred.shape != target.shape or pred.ndim != 3 or mask.shape != pred.shape[:2]:
    raise ValueError(f"mae expects pred and target (N, L, P) and mask (N, L), got "
                     f"{pred.shape}, {target.shape}, {mask.shape}")
  if channels and pred.shape[-1] % channels:
    raise ValueError(f"mae: patch size {pred.shape[-1]} is not a multiple of {channels} channels")
  target = mae_target(target, norm_pix, channels)
  per_patch = jnp.mean(jnp.square(pred.astype(jnp.float32) - target), axis=-1)
  mask = mask.astype(jnp.float32)
  return jnp.sum(per_patch * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def pretext_classification(logits, labels):
  """The loss of the classic pretext tasks, which make the network recognise the transformation
  applied to its input: the mean over the N inputs of -log softmax(logits)[label].

  RotNet (Gidaris et al., ICLR 2018, eq. 1-2): the label is which of K = 4 rotations (0, 90,
  180, 270 degrees) the image underwent, each image being fed in all four, so the mean over
  inputs is the paper's 1/N sum_i 1/K sum_y -log F^y(g(X_i | y)).
  Context prediction (Doersch et al., ICCV 2015, sec. 3): the label is where (1 of 8) a patch
  lies relative to the centre patch of a 3x3 grid.

  logits (N, K) in any float dtype (computed in float32); labels (N,) integers in [0, K).
  """
  if logits.ndim != 2 or labels.shape != logits.shape[:1]:
    raise ValueError(f"pretext_classification expects logits (N, K) and labels (N,), got "
                     f"{logits.shape} and {labels.shape}")
  return _cross_entropy(logits.astype(jnp.float32), labels)
