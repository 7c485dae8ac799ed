"""MoCo v3 (Chen, Xie & He, ICCV 2021).

  python -m jaxssl.main --config=configs/moco_v3.py           # CPU default: built-in shapes, minutes
  python -m jaxssl.main --config=configs/moco_v3.py:quick     # seconds; smoke tests
  python -m jaxssl.main --config=configs/moco_v3.py:full      # the paper's ResNet-50 ImageNet recipe

The paper's ViT-S recipe on top of :full: --config.model.name=vit --config.model.variant=small/16
--config.optimizer.name=adamw --config.optimizer.base_lr=1.5e-4 --config.optimizer.weight_decay=0.1
--config.batch_size=1024 --config.moco_v3.temperature=0.2 --config.moco_v3.proj_layers=3
--config.moco_v3.pred_last_bn=True (and 300 epochs, 40 of warm-up).
"""
import ml_collections

from jaxssl import augment, config_base

IMAGENET_EXAMPLES = 1_281_167


def view(**overrides):
  """One augmentation pipeline (jaxssl.augment.simclr_view); defaults = MoCo v3's ImageNet views
  (BYOL's: jitter 0.4/0.4/0.2/0.1 with p=0.8), before the per-view blur and solarize."""
  v = augment.default_view_config()
  v.update(dict(saturation=0.2))
  v.update(overrides)
  return v


def get_config(arg=""):
  c = config_base.base_config()
  c.method = "moco_v3"

  # CPU default: the encoder and input normalisation of configs/simclr.py (see the notes there).
  # `variant` and `pool` serve --config.model.name=vit.
  c.model = ml_collections.ConfigDict(dict(name="resnet", depth=10, width=16, stem="small",
                                           variant="mu/4", pool="cls"))
  c.model.dtype = c.get_ref("compute_dtype")
  c.input_norm = "per_image"
  # hidden_dim: the projector's and the predictor's hidden width; proj_dim: their output width.
  # The paper's ResNet heads: a 2-layer projector and a predictor, both with hidden BN, output BN
  # on the projector only. T = 0.2 (the paper's ViT value; 1.0 for ResNet-50 at batch 4096; the CPU
  # default below uses 0.1) and a base momentum of 0.99 with the cosine schedule to 1.
  c.moco_v3 = ml_collections.ConfigDict(dict(hidden_dim=512, proj_dim=128, proj_layers=2,
                                             pred_last_bn=False, base_momentum=0.99, temperature=0.2))
  # Small images: no blur, SimCLR's stronger colour jitter, the paper's asymmetric solarization.
  small = dict(crop_scale=(0.3, 1.0), blur_prob=0.0, brightness=0.8, contrast=0.8, saturation=0.8,
               hue=0.2)
  c.augment = ml_collections.ConfigDict(dict(view1=view(**small), view2=view(**small, solarize_prob=0.2)))

  # Each step also runs the momentum encoder forward on both views (~1.3x SimCLR's step time), so
  # fewer steps than SimCLR's 450 fit the same ~8-minute budget (380 steps: 6 min 51 s in all).
  c.batch_size = 256
  c.total_steps = 380
  c.log_every = 20
  c.ckpt_every = 200
  c.eval_every = 0
  c.optimizer.name = "lars"
  c.optimizer.base_lr = 1.0
  c.optimizer.warmup_steps = 20
  c.optimizer.weight_decay = 1e-6

  if not arg:  # CPU default only (:quick and :full keep the values above)
    # SimCLR's CPU recipe (configs/simclr.py): T = 0.1 and LARS at 1.5. On `shapes` (one run
    # each): T = 0.2, lr 1.0, 340 steps: kNN 0.348; T = 0.1, lr 1.5, 380 steps: 0.361.
    c.moco_v3.temperature = 0.1
    c.optimizer.base_lr = 1.5

  if arg == "quick":  # a few seconds: tests and smoke runs
    c.model.depth, c.model.width = 10, 8
    c.moco_v3.hidden_dim, c.moco_v3.proj_dim = 64, 32
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 32, 6, 2, 3
    c.data.image_size = 16
    c.eval.num_train, c.eval.num_test, c.eval.linear_steps = 256, 128, 50
  elif arg == "full":  # the paper's ResNet-50 recipe: ImageNet, 4096 batch, LARS, 100 epochs
    c.dataset = "tfds"
    c.data.tfds_name = "imagenet2012"
    c.data.image_size = 224
    c.data.num_workers = 32
    c.model.depth, c.model.width, c.model.stem = 50, 64, "imagenet"
    c.input_norm = "fixed"
    c.moco_v3.hidden_dim, c.moco_v3.proj_dim = 4096, 256
    c.moco_v3.temperature = 1.0
    c.augment.view1 = view(crop_scale=(0.08, 1.0), blur_prob=1.0, solarize_prob=0.0)
    c.augment.view2 = view(crop_scale=(0.08, 1.0), blur_prob=0.1, solarize_prob=0.2)
    c.batch_size = 4096
    c.total_steps = 100 * IMAGENET_EXAMPLES // 4096
    c.log_every, c.ckpt_every, c.eval_every = 100, 2000, 5000
    c.optimizer.base_lr, c.optimizer.weight_decay = 0.6, 1e-6
    c.optimizer.warmup_steps = 10 * IMAGENET_EXAMPLES // 4096
    c.compute_dtype = "bfloat16"
    c.eval.num_train, c.eval.num_test = 50_000, 10_000
  elif arg:
    raise ValueError(f"configs/moco_v3.py: unknown variant {arg!r} (use '', 'quick' or 'full')")
  return c
