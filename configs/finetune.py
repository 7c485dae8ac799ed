"""Supervised fine-tuning / linear probing of a pretrained encoder (jaxssl/methods/finetune.py).

  python -m jaxssl.main --config=configs/finetune.py --config.init_from=workdirs/simclr
  python -m jaxssl.main --config=configs/finetune.py:linear --config.init_from=EXPORT_DIR
  python -m jaxssl.main --config=configs/finetune.py            # no init_from: from scratch
  python -m jaxssl.main --config=configs/finetune.py:linear,quick  # variants combine: seconds
  python -m jaxssl.main --config=configs/finetune.py:mae --config.init_from=workdirs/mae

init_from is a workdir or an export (`python -m jaxssl.export`); config.model must be that
run's encoder: by default the CPU encoder of configs/simclr.py and the other image methods; with
`mae`, the ViT of configs/mae.py, fine-tuned with MAE's layer-wise learning-rate decay (0.75).
The evaluation adds classifier/top1: the trained head's held-out accuracy.
"""
import ml_collections

from configs import mae, simclr
from jaxssl import config_base


def get_config(arg=""):
  parts = arg.split(",") if arg else []  # e.g. "linear,quick" or "mae,linear"
  linear, from_mae = "linear" in parts, "mae" in parts
  sizes = [p for p in parts if p not in ("linear", "mae")]
  if len(sizes) > 1 or sizes and sizes[0] not in ("quick", "full"):
    raise ValueError(f"configs/finetune.py: unknown variant {arg!r} (use linear, mae, quick, "
                     "full, or a combination such as mae,linear,quick)")
  size = sizes[0] if sizes else ""
  c = config_base.base_config()
  c.method = "finetune"
  # The encoder and input of the pretraining configs (the CNN of the image methods, or MAE's ViT).
  pretrain = (mae if from_mae else simclr).get_config(size)
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

  if from_mae and not linear:
    c.optimizer.layer_decay = 0.75  # MAE's fine-tuning of ViT-B.
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
    if from_mae and not linear:
      # MAE's ViT-B/16 recipe (FINETUNE.md): 100 epochs, base lr 5e-4 per 256, layer decay
      # 0.65, 5 warm-up epochs, weight decay 0.05. Not here: mixup/cutmix, drop path, smoothing.
      c.optimizer.base_lr, c.optimizer.layer_decay = 5e-4, 0.65
      c.optimizer.warmup_steps = 5 * 1_281_167 // 1024
  return c
