"""RotNet: rotation prediction (Gidaris et al., ICLR 2018), a classic pretext task.

  python -m jaxssl.main --config=configs/rotation.py            # CPU default: built-in shapes, minutes
  python -m jaxssl.main --config=configs/rotation.py:quick      # seconds; smoke tests
  python -m jaxssl.main --config=configs/rotation.py:full       # the paper's ImageNet recipe (TPU/GPU)
"""
import ml_collections

from jaxssl import augment, config_base

IMAGENET_EXAMPLES = 1_281_167


def view(**overrides):
  """Crops and flips only (jaxssl.augment.simclr_view), as the paper's CIFAR-10 training: the
  task needs no colour augmentation, since colour says nothing about which way is up."""
  v = augment.default_view_config()
  v.update(dict(crop_scale=(0.5, 1.0), jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0))
  v.update(overrides)
  return v


def get_config(arg=""):
  c = config_base.base_config()
  c.method = "rotation"

  # CPU default: the encoder and input normalisation of configs/simclr.py (see the reasons there).
  c.model = ml_collections.ConfigDict(dict(name="resnet", depth=10, width=16, stem="small",
                                           variant="", pool="gap"))
  c.model.dtype = c.get_ref("compute_dtype")
  c.input_norm = "per_image"
  # The rotation classifier on the pooled features: Dense-BN-ReLU-Dense.
  c.rotation = ml_collections.ConfigDict(dict(head_hidden_dim=256, head_layers=2))
  c.augment = ml_collections.ConfigDict(dict(view=view()))

  # 128 images = 512 rotated inputs per step, as many as a SimCLR step's 2 x 256 views. The
  # paper's CIFAR-10 optimiser (SGD, momentum 0.9, weight decay 5e-4; a cosine schedule here
  # instead of its steps) at 2.5x its lr of 0.1. On `shapes` only 4 of the 10 classes (heart,
  # arrow, half-disc, crescent) show which way is up, so the signal is sparse: one run each,
  # 450 steps at lr 0.1: kNN 0.2565 / linear 0.263; 900 steps at 0.25: 0.523 / 0.5585.
  c.batch_size = 128
  c.total_steps = 900
  c.log_every = 20
  c.ckpt_every = 300
  c.eval_every = 0
  c.optimizer.name = "sgd"
  c.optimizer.base_lr = 0.5
  c.optimizer.warmup_steps = 20
  c.optimizer.weight_decay = 5e-4

  if arg == "quick":  # a few seconds: tests and smoke runs
    c.model.depth, c.model.width = 10, 8
    c.rotation.head_hidden_dim = 32
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 16, 6, 2, 3
    c.data.image_size = 16
    c.eval.num_train, c.eval.num_test, c.eval.linear_steps = 256, 128, 50
  elif arg == "full":  # the paper's ImageNet optimiser (batch 192, SGD, lr 0.01, 30 epochs)
    c.dataset = "tfds"
    c.data.tfds_name = "imagenet2012"
    c.data.image_size = 224
    c.data.num_workers = 32
    c.model.depth, c.model.width, c.model.stem = 50, 64, "imagenet"
    c.input_norm = "fixed"
    c.rotation.head_hidden_dim = 4096
    c.augment.view = view(crop_scale=(0.08, 1.0))
    c.batch_size = 192
    c.total_steps = 30 * IMAGENET_EXAMPLES // 192
    c.log_every, c.ckpt_every, c.eval_every = 100, 5000, 20000
    c.optimizer.base_lr, c.optimizer.warmup_steps = 0.01 * 256 / 192, 0
    c.compute_dtype = "bfloat16"
    c.eval.num_train, c.eval.num_test = 50_000, 10_000
  elif arg:
    raise ValueError(f"configs/rotation.py: unknown variant {arg!r} (use '', 'quick' or 'full')")
  return c
