"""MIL-NCE (Miech et al., "End-to-End Learning of Visual Representations from Uncurated
Instructional Videos", CVPR 2020): video and text only.

  python -m jaxssl.main --config=configs/milnce.py            # CPU default: avshapes clips
  python -m jaxssl.main --config=configs/milnce.py:quick      # seconds; smoke tests
  python -m jaxssl.main --config=configs/milnce.py:full       # the paper's recipe (TPU/GPU)

Clip shapes, encoders and augmentation are those of configs/mmv.py (jaxssl/methods/
_multimodal.py's `add_config`), without the audio encoder. milnce: joint-space width, score
normalisation, temperature.
"""
import ml_collections

from jaxssl import config_base
from jaxssl.methods import _multimodal


def get_config(arg=""):
  c = config_base.base_config()
  c.method = "milnce"
  _multimodal.add_config(c, arg)
  del c.audio
  # CPU: cosine scores over a temperature, as MMV: raw dot products (the paper) start with
  # arbitrary scales and are slow to settle in a short, small-batch run.
  c.milnce = ml_collections.ConfigDict(dict(embed_dim=64, l2_normalize=True, temperature=0.07))
  c.batch_size = 128
  c.total_steps = 300
  c.log_every = 20
  c.ckpt_every = 100
  c.optimizer.name = "adamw"
  c.optimizer.base_lr = 2e-3
  c.optimizer.warmup_steps = 20
  c.optimizer.weight_decay = 0.0

  if arg == "quick":
    c.milnce.embed_dim = 8
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 16, 6, 2, 3
  elif arg == "full":
    # 512-d joint space on raw dot products; batch 8192, Adam at 1e-3 (base_lr is per 256).
    c.milnce.update(dict(embed_dim=512, l2_normalize=False, temperature=1.0))
    c.batch_size = 8192
    c.total_steps = 400_000
    c.log_every, c.ckpt_every, c.eval_every = 100, 5000, 50_000
    c.optimizer.base_lr, c.optimizer.warmup_steps = 1e-3 * 256 / 8192, 5000
  return c
