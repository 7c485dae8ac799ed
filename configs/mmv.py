"""MMV (Alayrac et al., "Self-Supervised MultiModal Versatile Networks", NeurIPS 2020).

  python -m jaxssl.main --config=configs/mmv.py            # CPU default: procedural avshapes clips
  python -m jaxssl.main --config=configs/mmv.py:quick      # seconds; smoke tests
  python -m jaxssl.main --config=configs/mmv.py:full       # the paper's recipe (TPU/GPU)

Keys beyond config_base: the clip shapes (data.*), encoders (video, audio, text) and per-clip
augmentation shared with configs/milnce.py (set by jaxssl/methods/_multimodal.py's `add_config`),
and mmv (embedding graph, dimensions, temperature, loss weights).
"""
import ml_collections

from jaxssl import config_base
from jaxssl.methods import _multimodal


def get_config(arg=""):
  c = config_base.base_config()
  c.method = "mmv"
  _multimodal.add_config(c, arg)
  # fac: the paper's best graph. Temperature 0.07 and unit loss weights, as in the paper.
  c.mmv = ml_collections.ConfigDict(dict(graph="fac", va_dim=128, vat_dim=64, temperature=0.07,
                                         weight_va=1.0, weight_vt=1.0))
  c.batch_size = 128
  c.total_steps = 300
  c.log_every = 20
  c.ckpt_every = 100
  c.optimizer.name = "adamw"
  c.optimizer.base_lr = 8e-3  # Per 256 clips (linear scaling); Adam, as the paper.
  # Measured (t2v R@1 over 2,000 test clips): base_lr 1e-3, 150 steps: 0.009; 2e-3, 300 steps:
  # 0.047; 8e-3 with the 3-frame video stem, 150 steps: 0.050, 300 steps: 0.147 (README).
  c.optimizer.warmup_steps = 20
  c.optimizer.weight_decay = 0.0

  if arg == "quick":
    c.mmv.va_dim, c.mmv.vat_dim = 16, 8
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 16, 6, 2, 3
  elif arg == "full":
    # 512-d VA and 256-d VAT spaces; Adam at 0.002 for the 4096-clip batch (base_lr is per
    # 256), 5k warm-up steps then cosine decay, 500k steps.
    c.mmv.va_dim, c.mmv.vat_dim = 512, 256
    c.batch_size = 4096
    c.total_steps = 500_000
    c.log_every, c.ckpt_every, c.eval_every = 100, 5000, 50_000
    c.optimizer.base_lr, c.optimizer.warmup_steps = 0.002 * 256 / 4096, 5000
  return c
