"""MAE (He et al., CVPR 2022): masked-patch reconstruction with a ViT.

  python -m jaxssl.main --config=configs/mae.py            # CPU default: built-in shapes, minutes
  python -m jaxssl.main --config=configs/mae.py:quick      # seconds; smoke tests
  python -m jaxssl.main --config=configs/mae.py:full       # ViT-B/16, the paper's ImageNet recipe

Fine-tune or linear-probe the result with configs/finetune.py:mae (see its docstring).
"""
import ml_collections

from configs import simclr
from jaxssl import config_base


def add_mae_config(c, mask_ratio, decoder):
  """config.mae: masking, target and decoder (width, depth, heads) of jaxssl/methods/mae.py."""
  width, depth, heads = decoder
  c.mae = ml_collections.ConfigDict(dict(
      mask_ratio=mask_ratio, masking="random", norm_pix=True, norm_per_channel=False,
      decoder_width=width, decoder_depth=depth, decoder_heads=heads))


def get_config(arg=""):
  c = config_base.base_config()
  c.method = "mae"
  # CPU default: the 4-block ViT-mu on 4x4 patches of 32x32 images (64 tokens, 16 visible).
  c.model = ml_collections.ConfigDict(dict(name="vit", variant="mu/4", pool="cls",
                                           posemb="sincos2d", dropout=0.0, remat=False,
                                           scan_layers=False))
  c.model.dtype = c.get_ref("compute_dtype")
  c.input_norm = "fixed"
  # MAE's paper: 75% masked, normalised-pixel targets, a decoder narrower than the encoder.
  add_mae_config(c, mask_ratio=0.75, decoder=(64, 2, 4))
  # MAE's augmentation: random resized crop and flip only (masking is the pretext task).
  c.augment = ml_collections.ConfigDict(dict(view=simclr.view(
      crop_scale=(0.35, 1.0), jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)))

  c.batch_size = 256
  c.total_steps = 500
  c.log_every = 25
  c.ckpt_every = 250
  c.optimizer.name = "adamw"
  c.optimizer.base_lr = 1.5e-3  # Per 256; MAE's 1.5e-4 is for 800 epochs, not a short CPU run.
  c.optimizer.b2 = 0.95
  c.optimizer.weight_decay = 0.05
  c.optimizer.warmup_steps = 25

  if arg == "quick":
    c.model.variant = "mu/4"  # 16 tokens of 16x16 images, 4 visible.
    c.mae.decoder_width, c.mae.decoder_depth, c.mae.decoder_heads = 32, 1, 2
    c.data.image_size = 16
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 32, 6, 2, 3
    c.eval.num_train, c.eval.num_test, c.eval.linear_steps = 256, 128, 50
  elif arg == "full":
    # ViT-B/16 at 224 on ImageNet: 800 epochs of 4096 images, base lr 1.5e-4 per 256, AdamW
    # (0.9, 0.95), weight decay 0.05, 40 warm-up epochs, crops of 20-100%; 8-block 512-wide
    # decoder; bf16 compute with float32 parameters and loss.
    c.dataset = "tfds"
    c.data.tfds_name = "imagenet2012"
    c.data.image_size = 224
    c.data.num_workers = 32
    c.model.variant = "base/16"
    c.mae.decoder_width, c.mae.decoder_depth, c.mae.decoder_heads = 512, 8, 16
    c.augment.view.crop_scale = (0.2, 1.0)
    epoch = 1_281_167 // 4096
    c.batch_size, c.total_steps = 4096, 800 * epoch
    c.log_every, c.ckpt_every, c.eval_every = 100, 2000, 20 * epoch
    c.optimizer.base_lr, c.optimizer.warmup_steps = 1.5e-4, 40 * epoch
    c.compute_dtype = "bfloat16"
    c.eval.num_train, c.eval.num_test = 50_000, 10_000
  elif arg:
    raise ValueError(f"configs/mae.py: unknown variant {arg!r} (use '', 'quick' or 'full')")
  return c
