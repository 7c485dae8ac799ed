"""Test session set-up: 8 fake CPU devices for every test, a compilation cache, absl flags.

XLA_FLAGS must be set before jax's backend starts, hence at conftest import time. Tests that
want one device build their mesh from `jax.devices()[:1]`; the subprocesses tests start see the
machine's devices unless they set XLA_FLAGS themselves.
"""
import atexit
import os
import shutil
import tempfile

_XLA_FLAGS = os.environ.get("XLA_FLAGS")
# The tests' programs are small and compiled once each: LLVM's optimisation passes cost more than
# they save (an 8-device method test: 41 -> 22 CPU-seconds). XLA's own graph passes, and so the
# numerics the tests check, are unchanged.
os.environ["XLA_FLAGS"] = ((_XLA_FLAGS or "") + " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402

jax.devices()  # The backend reads XLA_FLAGS once, here; this process keeps its 8 devices.
# The `python -m jaxssl.main` runs the tests start get the machine's one CPU device, as a user's
# run does: 8 fake devices on 2 cores would make each such run ~1.8x slower.
if _XLA_FLAGS is None:
  del os.environ["XLA_FLAGS"]
else:
  os.environ["XLA_FLAGS"] = _XLA_FLAGS
# One persistent compilation cache per test session, never the user's ~/.cache: a repeated
# config loads its compiled train step instead of compiling it again (~35% of a quick run on 2
# cores). `runs/` serves the `python -m jaxssl.main` runs the tests start (main.py reads
# $JAXSSL_CACHE_DIR), `in_process/` the runs inside this process. Under pytest-xdist the
# controller makes the directory and removes it at exit; its workers inherit and share it.
if "_JAXSSL_TEST_CACHE" not in os.environ:
  os.environ["_JAXSSL_TEST_CACHE"] = tempfile.mkdtemp(prefix="jaxssl-test-xla-")
  atexit.register(shutil.rmtree, os.environ["_JAXSSL_TEST_CACHE"], ignore_errors=True)
os.environ["JAXSSL_CACHE_DIR"] = os.path.join(os.environ["_JAXSSL_TEST_CACHE"], "runs")
jax.config.update("jax_compilation_cache_dir",
                  os.path.join(os.environ["_JAXSSL_TEST_CACHE"], "in_process"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.25)  # As main.py does.

from absl import flags  # noqa: E402

# grain's worker processes read absl flags; outside absl.app.run they must be marked parsed.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


from quick_runs import simclr_quick_run  # noqa: E402,F401  (a fixture, for every test module)
