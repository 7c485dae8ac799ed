"""Each loss against a straightforward NumPy implementation of the paper's formula."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import losses

# Under jit: one compile per shape (eager mode compiles each primitive, ~3x slower here).
nt_xent = jax.jit(losses.nt_xent)


def np_nt_xent(z1, z2, t):
  """SimCLR Alg. 1 written as loops: l(i,j) = -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t)."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2 = len(z)
  n = n2 // 2
  total = 0.0
  for i in range(n2):
    j = (i + n) % n2
    denom = sum(np.exp(z[i] @ z[k] / t) for k in range(n2) if k != i)
    total += -np.log(np.exp(z[i] @ z[j] / t) / denom)
  return total / n2


@pytest.mark.parametrize("n,d", [(1, 4), (2, 8), (7, 16), (32, 3)])
@pytest.mark.parametrize("t", [0.05, 0.2, 1.0])
def test_nt_xent_matches_numpy(n, d, t):
  rng = np.random.default_rng(n * 100 + d)
  z1, z2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
  got = nt_xent(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32), t)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), np_nt_xent(z1, z2, t), rtol=1e-5, atol=1e-6)


def test_nt_xent_batch_of_one_has_no_negatives():
  # With one example each anchor's only candidate is its positive: the loss is exactly 0.
  z = jnp.asarray(np.random.default_rng(0).normal(size=(1, 5)), jnp.float32)
  assert float(nt_xent(z, -z, 0.1)) == pytest.approx(0.0, abs=1e-6)


def test_nt_xent_bf16_inputs_computed_in_float32():
  rng = np.random.default_rng(1)
  z1, z2 = rng.normal(size=(16, 32)), rng.normal(size=(16, 32))
  b1, b2 = jnp.asarray(z1, jnp.bfloat16), jnp.asarray(z2, jnp.bfloat16)
  got = nt_xent(b1, b2, 0.1)
  assert got.dtype == jnp.float32
  want = np_nt_xent(np.asarray(b1, np.float64), np.asarray(b2, np.float64), 0.1)
  np.testing.assert_allclose(float(got), want, rtol=1e-4)


def test_nt_xent_is_scale_invariant_and_prefers_aligned_views():
  rng = np.random.default_rng(2)
  z = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
  noise = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
  np.testing.assert_allclose(nt_xent(z, z + 0.1 * noise, 0.2),
                             nt_xent(3 * z, 3 * (z + 0.1 * noise), 0.2), rtol=1e-5)
  assert nt_xent(z, z + 0.1 * noise, 0.2) < nt_xent(z, noise, 0.2)


def test_nt_xent_gradient_matches_finite_differences():
  rng = np.random.default_rng(3)
  z1 = rng.normal(size=(4, 6))
  z2 = rng.normal(size=(4, 6))
  grad = jax.jit(jax.grad(lambda a: losses.nt_xent(a, jnp.asarray(z2, jnp.float32), 0.5)))
  g = np.asarray(grad(jnp.asarray(z1, jnp.float32)))
  eps = 1e-4
  for idx in [(0, 0), (1, 3), (3, 5)]:
    zp, zm = z1.copy(), z1.copy()
    zp[idx] += eps
    zm[idx] -= eps
    fd = (np_nt_xent(zp, z2, 0.5) - np_nt_xent(zm, z2, 0.5)) / (2 * eps)
    np.testing.assert_allclose(g[idx], fd, rtol=1e-3, atol=1e-5)


def test_nt_xent_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="equal shape"):
    losses.nt_xent(jnp.ones((4, 3)), jnp.ones((5, 3)))


# ---- References for the losses below: plain float64 NumPy, written from the papers' formulas. ----
# The JAX functions are called under jit; temperatures are traced, so varying them is free.

def np_unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_log_softmax(v):
  v = v - v.max()
  return v - np.log(np.sum(np.exp(v)))


def np_info_nce(q, k, queue=None, temperature=0.2):
  q, k = np_unit(q), np_unit(k)
  total = 0.0
  for i in range(len(q)):
    if queue is None:  # MoCo v3: the positive is k_i among all N keys
      logits, pos = np.array([q[i] @ kj for kj in k]) / temperature, i
    else:  # MoCo v2: [positive, queue negatives], label 0
      logits, pos = np.concatenate([[q[i] @ k[i]], np_unit(queue) @ q[i]]) / temperature, 0
    total -= np_log_softmax(logits)[pos]
  return total / len(q)


def np_byol(p, z):
  return np.mean([np.sum((pi / np.linalg.norm(pi) - zi / np.linalg.norm(zi)) ** 2)
                  for pi, zi in zip(p, z)])


def np_simsiam(p, z):
  return np.mean([-(pi @ zi) / (np.linalg.norm(pi) * np.linalg.norm(zi)) for pi, zi in zip(p, z)])


def np_barlow_twins(z1, z2, lambda_offdiag=5e-3):
  n, d = z1.shape
  bn = lambda z: (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)  # noqa: E731  population variance
  a, b = bn(z1), bn(z2)
  loss = 0.0
  for i in range(d):
    for j in range(d):
      c = np.sum(a[:, i] * b[:, j]) / n
      loss += (1 - c) ** 2 if i == j else lambda_offdiag * c ** 2
  return loss


def np_vicreg_terms(x, y):
  d = x.shape[1]
  std = lambda z: np.mean(np.maximum(0, 1 - np.sqrt(z.var(0, ddof=1) + 1e-4)))  # noqa: E731
  off = lambda c: (np.sum(c ** 2) - np.sum(np.diag(c) ** 2)) / d  # noqa: E731
  return {"invariance": np.mean((x - y) ** 2), "variance": (std(x) + std(y)) / 2,
          "covariance": off(np.cov(x, rowvar=False)) + off(np.cov(y, rowvar=False))}


def np_vicreg(x, y, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
  t = np_vicreg_terms(x, y)
  return sim_coeff * t["invariance"] + std_coeff * t["variance"] + cov_coeff * t["covariance"]


def np_dino(s, t, center, student_temperature, teacher_temperature):
  total = 0.0
  for si, ti in zip(s, t):
    pt = np.exp(np_log_softmax((ti - center) / teacher_temperature))
    total += -np.sum(pt * np_log_softmax(si / student_temperature))
  return total / len(s)


def np_sinkhorn(scores, epsilon=0.05, iterations=3):
  """SwAV's distributed_sinkhorn, literally (float64, no max subtraction)."""
  q = np.exp(scores / epsilon).T
  k, b = q.shape
  q /= q.sum()
  for _ in range(iterations):
    q /= q.sum(axis=1, keepdims=True)
    q /= k
    q /= q.sum(axis=0, keepdims=True)
    q /= b
  return (q * b).T


def np_swav(scores, codes, temperature=0.1):
  return np.mean([-np.sum(c * np_log_softmax(s / temperature)) for s, c in zip(scores, codes)])


JIT = {name: jax.jit(getattr(losses, name)) for name in
       ["info_nce", "byol", "simsiam", "barlow_twins", "vicreg", "vicreg_terms", "dino", "swav"]}
JIT["sinkhorn_knopp"] = jax.jit(losses.sinkhorn_knopp, static_argnames="iterations")


def inputs(name, n, d, rng, dtype=jnp.float32):
  """Random non-trivial inputs: correlated views with per-feature scales and offsets."""
  scale = np.linspace(0.3, 2.0, d)
  z1 = rng.normal(size=(n, d)) * scale + rng.normal(size=d)
  z2 = 0.7 * z1 + rng.normal(size=(n, d)) * scale
  if name == "swav":  # softmax-like codes, as sinkhorn_knopp produces
    z2 = np.exp(z2) / np.exp(z2).sum(1, keepdims=True)
  args = [jnp.asarray(z, dtype) for z in (z1, z2)]
  if name == "dino":
    args.append(jnp.asarray(rng.normal(size=d), dtype))
  return args


CASES = [  # (name, reference, list of keyword settings)
    ("info_nce", np_info_nce, [dict(temperature=t) for t in (0.05, 0.2, 1.0)]),
    ("byol", np_byol, [{}]),
    ("simsiam", np_simsiam, [{}]),
    ("barlow_twins", np_barlow_twins, [{}, dict(lambda_offdiag=0.05)]),
    ("vicreg", np_vicreg, [{}, dict(sim_coeff=1.0, std_coeff=2.0, cov_coeff=3.0)]),
    ("dino", np_dino, [dict(student_temperature=0.1, teacher_temperature=0.04),
                       dict(student_temperature=1.0, teacher_temperature=0.07)]),
    ("swav", np_swav, [dict(temperature=t) for t in (0.1, 0.5)]),
]
NEEDS_TWO = {"barlow_twins", "vicreg"}


def check(name, ref, args, kw, rtol=1e-5, atol=1e-6):
  got = JIT[name](*args, **kw)
  assert got.dtype == jnp.float32
  want = ref(*[np.asarray(a, np.float64) for a in args], **kw)
  np.testing.assert_allclose(float(got), want, rtol=rtol, atol=atol, err_msg=f"{name} {kw}")


@pytest.mark.parametrize("name,ref,settings", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("n,d", [(1, 8), (2, 5), (256, 16)])
def test_loss_matches_numpy(name, ref, settings, n, d):
  if n == 1 and name in NEEDS_TWO:
    with pytest.raises(ValueError, match="at least 2"):
      JIT[name](*inputs(name, n, d, np.random.default_rng(0)))
    return
  args = inputs(name, n, d, np.random.default_rng(n * 100 + d))
  for kw in settings:
    check(name, ref, args, kw)


@pytest.mark.parametrize("name,ref,settings", CASES, ids=[c[0] for c in CASES])
def test_loss_bf16_inputs_computed_in_float32(name, ref, settings):
  # The reference sees exactly the bf16-rounded values, so only float32 arithmetic error remains.
  args = inputs(name, 64, 16, np.random.default_rng(5), jnp.bfloat16)
  check(name, ref, args, settings[0], rtol=2e-5)


@pytest.mark.parametrize("n,k", [(1, 7), (2, 16), (256, 1024)])
def test_info_nce_with_queue_matches_numpy(n, k):
  rng = np.random.default_rng(k)
  q, key = inputs("info_nce", n, 32, rng)
  queue = jnp.asarray(rng.normal(size=(k, 32)), jnp.float32)
  for t in (0.07, 0.2):
    check("info_nce", np_info_nce, [q, key, queue], dict(temperature=t))


def test_info_nce_conventions():
  rng = np.random.default_rng(6)
  q = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
  # Batch of one without a queue: no negatives, loss 0. Scale invariance of the cosine logits.
  assert float(JIT["info_nce"](q[:1], -q[:1])) == pytest.approx(0.0, abs=1e-6)
  k = q + 0.1 * jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
  np.testing.assert_allclose(JIT["info_nce"](q, k), JIT["info_nce"](5 * q, 0.5 * k), rtol=1e-5)
  # Aligned keys give a lower loss than shuffled ones, with and without a queue.
  assert JIT["info_nce"](q, k) < JIT["info_nce"](q, k[::-1])
  assert JIT["info_nce"](q, k, k[::-1]) < JIT["info_nce"](q, k[::-1], k)
  with pytest.raises(ValueError, match="queue"):
    losses.info_nce(q, k, jnp.ones((4, 3)))
  with pytest.raises(ValueError, match="equal shape"):
    losses.info_nce(q, k[:4])


def test_cosine_losses_extremes_and_scale_invariance():
  rng = np.random.default_rng(7)
  z = jnp.asarray(rng.normal(size=(16, 8)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(16, 8)), jnp.float32)
  assert float(JIT["byol"](z, 3 * z)) == pytest.approx(0.0, abs=1e-6)
  assert float(JIT["byol"](z, -z)) == pytest.approx(4.0, abs=1e-5)
  assert float(JIT["simsiam"](z, 3 * z)) == pytest.approx(-1.0, abs=1e-6)
  for name in ("byol", "simsiam"):
    np.testing.assert_allclose(JIT[name](z, w), JIT[name](2 * z, 0.1 * w), rtol=1e-5)
  np.testing.assert_allclose(JIT["byol"](z, w), 2 + 2 * JIT["simsiam"](z, w), rtol=1e-5)


def test_barlow_and_vicreg_minimal_cases():
  rng = np.random.default_rng(8)
  # Decorrelated, standardised features fed twice: Barlow C = I / (1 + eps) (loss ~ D * eps^2);
  # VICReg: zero invariance, std > 1 -> zero variance term.
  g = rng.normal(size=(64, 8))
  z = jnp.asarray(np.linalg.qr(g - g.mean(0))[0] * 8.0, jnp.float32)  # centred, orthonormal*sqrt(N)
  assert float(JIT["barlow_twins"](z, z)) < 1e-6
  assert float(JIT["barlow_twins"](z, z)) < float(JIT["barlow_twins"](z, z[::-1]))
  terms = JIT["vicreg_terms"](z, z)
  assert float(terms["invariance"]) == 0.0 and float(terms["variance"]) == 0.0
  collapsed = JIT["vicreg_terms"](0.01 * z, 0.01 * z)
  assert float(collapsed["variance"]) > 0.9
  np.testing.assert_allclose(JIT["vicreg"](z, z + 1), 25.0 + 2 * float(terms["covariance"]),
                             rtol=1e-5)


def test_vicreg_terms_match_numpy():
  z1, z2 = inputs("vicreg", 32, 6, np.random.default_rng(9))
  got = JIT["vicreg_terms"](z1, z2)
  want = np_vicreg_terms(np.asarray(z1, np.float64), np.asarray(z2, np.float64))
  assert set(got) == set(want)
  for key in want:
    np.testing.assert_allclose(float(got[key]), want[key], rtol=1e-5, atol=1e-7, err_msg=key)
  assert float(want["variance"]) > 0  # the relu is active on some features of these inputs


@pytest.mark.parametrize("name,ref,settings", [c for c in CASES if c[0] in
                                                ("info_nce", "vicreg", "barlow_twins", "dino")])
def test_gradient_matches_finite_differences(name, ref, settings):
  kw = settings[0]
  args = inputs(name, 6, 5, np.random.default_rng(10))
  g = np.asarray(jax.jit(jax.grad(lambda a: getattr(losses, name)(a, *args[1:], **kw)))(args[0]))
  x = [np.asarray(a, np.float64) for a in args]
  eps = 1e-5
  for idx in [(0, 0), (2, 3), (5, 4)]:
    xp, xm = x[0].copy(), x[0].copy()
    xp[idx] += eps
    xm[idx] -= eps
    fd = (ref(xp, *x[1:], **kw) - ref(xm, *x[1:], **kw)) / (2 * eps)
    np.testing.assert_allclose(g[idx], fd, rtol=1e-3, atol=1e-4, err_msg=f"{name} {idx}")


@pytest.mark.parametrize("b,k", [(1, 4), (2, 3), (256, 32)])
def test_sinkhorn_matches_swav_code_and_marginals(b, k):
  rng = np.random.default_rng(b + k)
  scores = np.tanh(rng.normal(size=(b, k)))  # cosine-like scores in [-1, 1]
  for eps, iters in [(0.05, 3), (0.1, 1)]:
    got = np.asarray(JIT["sinkhorn_knopp"](jnp.asarray(scores, jnp.float32), eps, iters))
    np.testing.assert_allclose(got, np_sinkhorn(scores, eps, iters), rtol=1e-4, atol=1e-7)
  # The last step normalises samples: each sample's codes sum to 1 whatever the iteration count.
  np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-5)
  # Enough iterations equipartition the prototypes too: each gets B/K of the mass.
  balanced = np.asarray(JIT["sinkhorn_knopp"](jnp.asarray(scores, jnp.float32), 0.05, 200))
  np.testing.assert_allclose(balanced.sum(1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(balanced.sum(0), b / k, rtol=1e-3)


def test_sinkhorn_is_stable_and_balances_progressively():
  rng = np.random.default_rng(11)
  scores = np.tanh(rng.normal(size=(64, 8)) + np.linspace(-1, 1, 8))
  # exp((scores + 100) / eps) overflows float32 without the global max subtraction. Scores on a
  # 2^-12 grid and eps = 2^-4 make the shift and the division exact, so the results must agree.
  scores = jnp.asarray(np.round(scores * 4096) / 4096, jnp.float32)
  np.testing.assert_allclose(JIT["sinkhorn_knopp"](scores + 100.0, 0.0625),
                             JIT["sinkhorn_knopp"](scores, 0.0625), rtol=1e-6, atol=1e-9)
  imbalance = [np.ptp(np.asarray(JIT["sinkhorn_knopp"](scores, 0.05, i)).sum(0))
               for i in (1, 3, 10)]
  assert imbalance[0] > imbalance[1] > imbalance[2]
  bf16 = jnp.asarray(scores, jnp.bfloat16)
  got = JIT["sinkhorn_knopp"](bf16)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, np_sinkhorn(np.asarray(bf16, np.float64)), rtol=1e-4, atol=1e-7)


def test_swav_and_dino_conventions():
  rng = np.random.default_rng(12)
  s = jnp.asarray(rng.normal(size=(16, 10)), jnp.float32)
  # swav with one-hot codes is the cross-entropy with those labels; sharper targets are easier.
  labels = jnp.argmax(s, axis=1)
  onehot = jax.nn.one_hot(labels, 10)
  want = -np.mean(np.asarray(jax.nn.log_softmax(s / 0.1))[np.arange(16), np.asarray(labels)])
  np.testing.assert_allclose(JIT["swav"](s, onehot, 0.1), want, rtol=1e-5)
  assert JIT["swav"](s, onehot, 0.1) < JIT["swav"](s, jnp.roll(onehot, 1, axis=1), 0.1)
  # DINO: the loss is minimal (= teacher entropy) when the student matches the centred teacher.
  t, c = 2 * s, jnp.asarray(rng.normal(size=10), jnp.float32)
  matched = JIT["dino"]((t - c) * 0.1 / 0.04, t, c, 0.1, 0.04)
  log_pt = jax.nn.log_softmax((t - c) / 0.04)
  entropy = -jnp.mean(jnp.sum(jnp.exp(log_pt) * log_pt, axis=1))
  np.testing.assert_allclose(matched, entropy, rtol=1e-4, atol=1e-6)
  assert matched < JIT["dino"](t, t, c, 0.1, 0.04)
  # The center may be (K,) or (1, K); anything else is rejected.
  np.testing.assert_allclose(JIT["dino"](s, t, c[None], 0.1, 0.04), JIT["dino"](s, t, c, 0.1, 0.04))
  with pytest.raises(ValueError, match="center"):
    losses.dino(s, t, jnp.ones(9), 0.1, 0.04)


@pytest.mark.parametrize("name", ["info_nce", "byol", "simsiam", "barlow_twins", "vicreg", "swav"])
def test_losses_reject_mismatched_shapes(name):
  with pytest.raises(ValueError, match="equal shape"):
    getattr(losses, name)(jnp.ones((4, 3)), jnp.ones((4, 5)))
  with pytest.raises(ValueError, match="equal shape"):
    getattr(losses, name)(jnp.ones((4, 3, 2)), jnp.ones((4, 3, 2)))
  with pytest.raises(ValueError, match=r"\(B, K\)"):
    losses.sinkhorn_knopp(jnp.ones((4,)))


# ---- MIL-NCE (Miech et al., CVPR 2020) -------------------------------------------------------

def np_mil_nce(video, text, negatives=(), valid=None):
  """MIL-NCE eq. 1 as loops: clip i's loss is
  -log( sum_k e^{x_iik} / sum_{j,k} (e^{x_ijk} + e^{x_jik}) ),  x_ijk = video_i . text_jk,
  with e^{video_i . negatives_q} added to the denominator for each valid extra caption q."""
  b, k = text.shape[:2]
  valid = np.ones(len(negatives), bool) if valid is None else valid
  total = 0.0
  for i in range(b):
    pos = sum(np.exp(video[i] @ text[i, c]) for c in range(k))
    denom = sum(np.exp(video[i] @ text[j, c]) + np.exp(video[j] @ text[i, c])
                for j in range(b) for c in range(k))
    denom += sum(np.exp(video[i] @ n) for n, ok in zip(negatives, valid) if ok)
    total += -np.log(pos / denom)
  return total / b


mil_nce = jax.jit(losses.mil_nce)


def mil_inputs(b, k, d, rng, dtype=jnp.float32):
  # Unit vectors over a temperature of 0.1, as MMV feeds the loss: scores up to +-10.
  video = np_unit(rng.normal(size=(b, d))) / 0.1
  text = 0.6 * video[:, None] * 0.1 + rng.normal(size=(b, k, d)) / np.sqrt(d)
  return jnp.asarray(video, dtype), jnp.asarray(text / np.linalg.norm(text, axis=-1,
                                                                      keepdims=True), dtype)


@pytest.mark.parametrize("b", [1, 2, 256])
@pytest.mark.parametrize("k", [1, 3])
def test_mil_nce_matches_numpy(b, k):
  video, text = mil_inputs(b, k, 16, np.random.default_rng(b * 10 + k))
  got = mil_nce(video, text)
  assert got.dtype == jnp.float32
  want = np_mil_nce(np.asarray(video, np.float64), np.asarray(text, np.float64))
  np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("b", [1, 2, 32])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_mil_nce_extra_negative_captions_match_numpy(b, dtype):
  rng = np.random.default_rng(b + 40)
  video, text = mil_inputs(b, 3, 16, rng, dtype)
  negatives = jnp.asarray(np_unit(rng.normal(size=(24, 16))), dtype)
  valid = rng.random(24) < 0.6
  got = mil_nce(video, text, negatives, jnp.asarray(valid))
  assert got.dtype == jnp.float32
  as64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
  want = np_mil_nce(as64(video), as64(text), as64(negatives), valid)
  np.testing.assert_allclose(float(got), want, rtol=2e-5)
  # Left-out rows change nothing; with no valid row it is the plain loss.
  np.testing.assert_allclose(float(mil_nce(video, text, negatives[valid])), float(got), rtol=1e-6)
  np.testing.assert_allclose(float(mil_nce(video, text, negatives, jnp.zeros(24, bool))),
                             float(mil_nce(video, text)), rtol=1e-6)
  # Masked rows get no gradient, and nothing is NaN.
  grad = jax.grad(lambda n: mil_nce(video, text, n, jnp.asarray(valid)))(negatives)
  assert np.all(np.isfinite(np.asarray(grad, np.float32)))
  assert not np.any(np.asarray(grad, np.float32)[~valid])
  with pytest.raises(ValueError, match="negatives"):
    mil_nce(video, text, negatives[:, :8])


def test_mil_nce_bf16_inputs_computed_in_float32():
  video, text = mil_inputs(32, 3, 16, np.random.default_rng(13), jnp.bfloat16)
  got = mil_nce(video, text)
  assert got.dtype == jnp.float32
  want = np_mil_nce(np.asarray(video, np.float64), np.asarray(text, np.float64))
  np.testing.assert_allclose(float(got), want, rtol=2e-5)


def test_mil_nce_single_clip_and_positive_pooling():
  # One clip and K captions: the 2K candidates are its positives counted twice, loss log 2.
  video, text = mil_inputs(1, 3, 8, np.random.default_rng(14))
  np.testing.assert_allclose(float(mil_nce(video, text)), np.log(2.0), rtol=1e-6)
  # Multiple instances: adding a well-aligned candidate lowers the loss of a clip.
  video, text = mil_inputs(8, 1, 8, np.random.default_rng(15))
  aligned = video[:, None] * 0.1
  assert mil_nce(video, jnp.concatenate([text, aligned], 1)) < mil_nce(video, text)


def test_mil_nce_with_one_caption_relates_to_symmetric_info_nce():
  """K = 1: clip i's loss is logaddexp(r_i, c_i) of its two InfoNCE terms (row: video i against
  all texts, column: text i against all videos), so the mean is at least log 2 + the symmetric
  InfoNCE (convexity), with equality when the score matrix is symmetric (r_i = c_i)."""
  rng = np.random.default_rng(16)
  t = 0.1
  v = rng.normal(size=(16, 8))
  w = v + rng.normal(size=(16, 8))
  unit = lambda z: jnp.asarray(np_unit(z), jnp.float32)  # noqa: E731
  symmetric = lambda a, b: (JIT["info_nce"](a, b, temperature=t)  # noqa: E731
                            + JIT["info_nce"](b, a, temperature=t)) / 2
  general = float(mil_nce(unit(v) / t, unit(w)[:, None]))
  assert general > np.log(2) + float(symmetric(unit(v), unit(w))) + 1e-3
  # Same vectors on both sides: x = V V^T is symmetric and the bound is attained.
  np.testing.assert_allclose(float(mil_nce(unit(v) / t, unit(v)[:, None])),
                             np.log(2) + float(symmetric(unit(v), unit(v))), rtol=1e-5)


def test_mil_nce_gradient_matches_finite_differences():
  video, text = [np.asarray(a, np.float64) for a in mil_inputs(5, 2, 4, np.random.default_rng(17))]
  g = np.asarray(jax.jit(jax.grad(losses.mil_nce))(jnp.asarray(video, jnp.float32),
                                                   jnp.asarray(text, jnp.float32)))
  eps = 1e-5
  for idx in [(0, 0), (2, 3), (4, 1)]:
    vp, vm = video.copy(), video.copy()
    vp[idx] += eps
    vm[idx] -= eps
    fd = (np_mil_nce(vp, text) - np_mil_nce(vm, text)) / (2 * eps)
    np.testing.assert_allclose(g[idx], fd, rtol=1e-3, atol=1e-4)


def test_mil_nce_rejects_bad_shapes():
  with pytest.raises(ValueError, match="mil_nce"):
    losses.mil_nce(jnp.ones((4, 3)), jnp.ones((4, 3)))
  with pytest.raises(ValueError, match="mil_nce"):
    losses.mil_nce(jnp.ones((4, 3)), jnp.ones((5, 2, 3)))


# --- the classic pretext tasks ---------------------------------------------------------------


def np_pretext_classification(logits, labels):
  """RotNet's eq. 2 / Doersch et al.'s loss as loops: 1/N sum_i -log(exp(l_iy) / sum_k exp(l_ik))."""
  logits = np.asarray(logits, np.float64)
  total = 0.0
  for row, y in zip(logits, labels):
    total += -(row[y] - np.log(np.sum(np.exp(row))))
  return total / len(logits)


@pytest.mark.parametrize("n,k", [(1, 4), (2, 8), (9, 4), (33, 100)])
@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0])
def test_pretext_classification_matches_numpy(n, k, scale):
  rng = np.random.default_rng(n * 7 + k)
  logits = rng.normal(size=(n, k)) * scale
  labels = rng.integers(0, k, size=n)
  got = jax.jit(losses.pretext_classification)(jnp.asarray(logits, jnp.float32),
                                               jnp.asarray(labels, jnp.int32))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), np_pretext_classification(logits, labels), rtol=1e-5,
                             atol=1e-6)


def test_pretext_classification_bf16_large_logits_and_extremes():
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(16, 4)) * 50, jnp.bfloat16)  # exp() would overflow bf16
  labels = rng.integers(0, 4, size=16)
  got = losses.pretext_classification(logits, jnp.asarray(labels))
  assert got.dtype == jnp.float32 and np.isfinite(float(got))
  np.testing.assert_allclose(float(got), np_pretext_classification(np.asarray(logits, np.float64),
                                                                   labels), rtol=1e-5)
  # Uniform logits: log K whatever the labels; a confident right answer: ~0.
  assert float(losses.pretext_classification(jnp.zeros((3, 4)), jnp.arange(3))) == pytest.approx(
      np.log(4), rel=1e-6)
  confident = jnp.asarray([[20.0, 0, 0, 0]])
  assert float(losses.pretext_classification(confident, jnp.asarray([0]))) < 1e-8


def test_pretext_classification_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match=r"logits \(N, K\) and labels \(N,\)"):
    losses.pretext_classification(jnp.zeros((4, 3)), jnp.zeros((5,), jnp.int32))
  with pytest.raises(ValueError, match=r"logits \(N, K\)"):
    losses.pretext_classification(jnp.zeros((4,)), jnp.zeros((4,), jnp.int32))
