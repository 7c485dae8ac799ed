"""`python -m jaxssl.main` that also records which training records this process read.

Each batch slice the process loads appends one line {"step", "index"} to
$JAXSSL_READS_DIR/process_<jax.process_index()>.jsonl; test_multiprocess.py checks that the
processes of one run read disjoint parts of every global batch.
"""
import json
import os
import sys

from absl import app

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from jaxssl import main  # noqa: E402
from jaxssl.data import pipeline  # noqa: E402

_load_slice = pipeline._load_slice


def _recording_load_slice(step, **kwargs):
  batch = _load_slice(step, **kwargs)
  path = os.path.join(os.environ["JAXSSL_READS_DIR"], f"process_{kwargs['process_index']}.jsonl")
  with open(path, "a") as f:
    f.write(json.dumps(dict(step=int(step), index=batch["index"].tolist())) + "\n")
  return batch


pipeline._load_slice = _recording_load_slice

if __name__ == "__main__":
  app.run(main.main, flags_parser=main._parse_flags)
