"""Each loss against a straightforward NumPy implementation of the paper's formula."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import losses


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
  got = losses.nt_xent(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32), t)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), np_nt_xent(z1, z2, t), rtol=1e-5, atol=1e-6)


def test_nt_xent_batch_of_one_has_no_negatives():
  # With one example each anchor's only candidate is its positive: the loss is exactly 0.
  z = jnp.asarray(np.random.default_rng(0).normal(size=(1, 5)), jnp.float32)
  assert float(losses.nt_xent(z, -z, 0.1)) == pytest.approx(0.0, abs=1e-6)


def test_nt_xent_bf16_inputs_computed_in_float32():
  rng = np.random.default_rng(1)
  z1, z2 = rng.normal(size=(16, 32)), rng.normal(size=(16, 32))
  b1, b2 = jnp.asarray(z1, jnp.bfloat16), jnp.asarray(z2, jnp.bfloat16)
  got = losses.nt_xent(b1, b2, 0.1)
  assert got.dtype == jnp.float32
  want = np_nt_xent(np.asarray(b1, np.float64), np.asarray(b2, np.float64), 0.1)
  np.testing.assert_allclose(float(got), want, rtol=1e-4)


def test_nt_xent_is_scale_invariant_and_prefers_aligned_views():
  rng = np.random.default_rng(2)
  z = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
  noise = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
  np.testing.assert_allclose(losses.nt_xent(z, z + 0.1 * noise, 0.2),
                             losses.nt_xent(3 * z, 3 * (z + 0.1 * noise), 0.2), rtol=1e-5)
  assert losses.nt_xent(z, z + 0.1 * noise, 0.2) < losses.nt_xent(z, noise, 0.2)


def test_nt_xent_gradient_matches_finite_differences():
  rng = np.random.default_rng(3)
  z1 = rng.normal(size=(4, 6))
  z2 = rng.normal(size=(4, 6))
  g = np.asarray(jax.grad(lambda a: losses.nt_xent(a, jnp.asarray(z2, jnp.float32), 0.5))(
      jnp.asarray(z1, jnp.float32)))
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
