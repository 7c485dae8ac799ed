"""Test session set-up: 8 fake CPU devices for every test, absl flags marked parsed.

XLA_FLAGS must be set before jax's backend starts, hence at conftest import time. Tests that
want one device build their mesh from `jax.devices()[:1]`; the subprocesses tests start see the
machine's devices unless they set XLA_FLAGS themselves.
"""
import atexit
import os
import shutil
import tempfile

_XLA_FLAGS = os.environ.get("XLA_FLAGS")
os.environ["XLA_FLAGS"] = (
    (_XLA_FLAGS or "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402

jax.devices()  # The backend reads XLA_FLAGS once, here; this process keeps its 8 devices.
# The `python -m jaxssl.main` runs the tests start get the machine's one CPU device, as a user's
# run does: 8 fake devices on 2 cores would make each such run ~1.8x slower.
if _XLA_FLAGS is None:
  del os.environ["XLA_FLAGS"]
else:
  os.environ["XLA_FLAGS"] = _XLA_FLAGS
# The `python -m jaxssl.main` runs the tests start share one persistent compilation cache for the
# session (a repeated quick config loads its train step instead of compiling it: ~35% of such a
# run on 2 cores), never the user's ~/.cache.
_XLA_CACHE = tempfile.mkdtemp(prefix="jaxssl-test-xla-")
os.environ["JAXSSL_CACHE_DIR"] = _XLA_CACHE
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)

from absl import flags  # noqa: E402

# grain's worker processes read absl flags; outside absl.app.run they must be marked parsed.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


from quick_runs import simclr_quick_run  # noqa: E402,F401  (a fixture, for every test module)
