"""Supervised fine-tuning / linear probing of a pretrained encoder (jaxssl/methods/finetune.py).

  python -m jaxssl.main --config=configs/finetune.py --config.init_from=workdirs/simclr
  python -m jaxssl.main --config=configs/finetune.py:linear --config.init_from=EXPORT_DIR
  python -m jaxssl.main --config=configs/finetune.py            # no init_from: from scratch
  python -m jaxssl.main --config=configs/finetune.py:linear,quick  # variants combine: seconds

init_from is a workdir or an export (`python -m jaxssl.export`); config.model must be that
run's encoder (the default is the CPU encoder of configs/simclr.py and the other image
methods). The evaluation adds classifier/top1: the trained head's held-out accuracy.
"""
import ml_collections

from configs import simclr
from jaxssl import config_base


def get_config(arg=""):
  parts = arg.split(",") if arg else []  # e.g. "linear,quick"
  linear, sizes = "linear" in parts, [p for p in parts if p != "linear"]
  if len(sizes) > 1 or sizes and sizes[0] not in ("quick", "full"):
    raise ValueError(f"configs/finetune.py: unknown variant {arg!r} (use linear, quick, full or "
                     "linear with one of the sizes, e.g. linear,quick)")
  size = sizes[0] if sizes else ""
  c = config_base.base_config()
  c.method = "finetune"
  pretrain = simclr.get_config(size)  # The encoder and input of the image pretraining configs.
  c.model, c.input_norm, c.data = pretrain.model, pretrain.input_norm, pretrain.data
  c.model.dtype = c.get_ref("compute_dtype")
  c.dataset = pretrain.dataset
  c.finetune = ml_collections.ConfigDict(dict(freeze_encoder=False, head_batchnorm=False))
  # Supervised augmentation: random resized crop and flip, no colour distortion.
  c.augment = ml_collections.ConfigDict(dict(view=simclr.view(
      crop_scale=(0.3, 1.0), jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)))
  c.batch_size = 256
  c.total_steps = 300
  c.optimizer.name = "adamw"
  c.optimizer.base_lr = 1e-3
  c.optimizer.warmup_steps = 20
  c.optimizer.weight_decay = 0.05
  c.eval.baselines = False  # The from-scratch run is the baseline.

  if linear:
    # MAE's linear probe: BatchNorm without affine before the head; LARS; no weight decay.
    c.finetune.freeze_encoder = c.finetune.head_batchnorm = True
    c.optimizer.name, c.optimizer.base_lr, c.optimizer.weight_decay = "lars", 0.1, 0.0
  if size == "quick":
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 32, 6, 2, 3
    c.eval.num_train, c.eval.num_test, c.eval.linear_steps = 256, 128, 50
  elif size == "full":
    c.batch_size, c.total_steps = 1024, 100 * 1_281_167 // 1024
    c.log_every, c.ckpt_every = 100, 2000
    c.compute_dtype = "bfloat16"
  return c
