"""SimCLR (Chen et al., ICML 2020).

  python -m jaxssl.main --config=configs/simclr.py            # CPU default: built-in shapes, minutes
  python -m jaxssl.main --config=configs/simclr.py:quick      # seconds; smoke tests
  python -m jaxssl.main --config=configs/simclr.py:full       # the paper's ImageNet recipe (TPU/GPU)
"""
import ml_collections

from jaxssl import config_base


def view(**overrides):
  """One augmentation pipeline (jaxssl.augment.simclr_view); defaults = SimCLR's ImageNet views."""
  v = ml_collections.ConfigDict(dict(
      crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_prob=0.5, jitter_prob=0.8,
      brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, grayscale_prob=0.2,
      blur_prob=0.5, blur_sigma=(0.1, 2.0), solarize_prob=0.0))
  v.update(overrides)
  return v


def get_config(arg=""):
  c = config_base.base_config()
  c.method = "simclr"

  # CPU default: XLA's CPU convolutions are slow on few channels, so the encoder is a ResNet-10 of
  # width 16 whose stem halves the resolution (~290 img/s of SimCLR training on 2 cores at 32 px).
  c.model = ml_collections.ConfigDict(dict(name="resnet", depth=10, width=16, stem="small",
                                           variant="", pool="gap"))
  c.model.dtype = c.get_ref("compute_dtype")
  # Per-image standardisation: on `shapes` the background's brightness/colour otherwise dominates
  # instance discrimination and the learnt features ignore the shape (kNN 0.20 -> 0.49 here).
  c.input_norm = "per_image"
  c.simclr = ml_collections.ConfigDict(dict(temperature=0.1, proj_hidden_dim=512, proj_dim=128,
                                            proj_layers=2))
  # Small images: no blur (SimCLR's CIFAR-10 recipe), crops of at least 30% of the image.
  small_view = view(crop_scale=(0.3, 1.0), blur_prob=0.0)
  c.augment = ml_collections.ConfigDict(dict(view1=small_view, view2=small_view.copy_and_resolve_references()))

  c.batch_size = 256
  c.total_steps = 450
  c.log_every = 20
  c.ckpt_every = 200
  c.eval_every = 0
  c.optimizer.name = "lars"
  c.optimizer.base_lr = 1.5
  c.optimizer.warmup_steps = 20
  c.optimizer.weight_decay = 1e-6

  if arg == "quick":  # a few seconds: tests and smoke runs
    c.model.depth, c.model.width = 10, 8
    c.simclr.proj_hidden_dim, c.simclr.proj_dim = 64, 32
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 32, 6, 2, 3
    c.data.image_size = 16
    c.eval.num_train, c.eval.num_test, c.eval.linear_steps = 256, 128, 50
  elif arg == "full":  # the paper's recipe: ResNet-50, ImageNet, 4096 batch, 100 epochs
    c.dataset = "tfds"
    c.data.tfds_name = "imagenet2012"
    c.data.image_size = 224
    c.data.num_workers = 32
    c.model.depth, c.model.width, c.model.stem = 50, 64, "imagenet"
    c.input_norm = "fixed"
    c.simclr.proj_hidden_dim, c.simclr.proj_dim, c.simclr.proj_layers = 2048, 128, 3
    c.augment.view1, c.augment.view2 = view(), view()
    c.batch_size = 4096
    c.total_steps = 100 * 1_281_167 // 4096
    c.log_every, c.ckpt_every, c.eval_every = 100, 2000, 5000
    c.optimizer.base_lr, c.optimizer.warmup_steps = 0.3, 10 * 1_281_167 // 4096
    c.compute_dtype = "bfloat16"
    c.eval.num_train, c.eval.num_test = 50_000, 10_000
  elif arg:
    raise ValueError(f"configs/simclr.py: unknown variant {arg!r} (use '', 'quick' or 'full')")
  return c
