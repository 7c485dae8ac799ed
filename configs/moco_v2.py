"""MoCo v2 (Chen, Fan, Girshick & He, 2020).

  python -m jaxssl.main --config=configs/moco_v2.py           # CPU default: built-in shapes, minutes
  python -m jaxssl.main --config=configs/moco_v2.py:quick     # seconds; smoke tests
  python -m jaxssl.main --config=configs/moco_v2.py:full      # the paper's ImageNet recipe (TPU/GPU)
"""
import ml_collections

from jaxssl import augment, config_base

IMAGENET_EXAMPLES = 1_281_167


def view(**overrides):
  """One augmentation pipeline (jaxssl.augment.simclr_view); defaults = MoCo v2's ImageNet view
  (crops of 20-100%, jitter 0.4/0.4/0.4/0.1 with p=0.8, grayscale p=0.2, blur p=0.5)."""
  v = augment.default_view_config()
  v.update(dict(crop_scale=(0.2, 1.0)))
  v.update(overrides)
  return v


def get_config(arg=""):
  c = config_base.base_config()
  c.method = "moco_v2"

  # CPU default: the encoder and input normalisation of configs/simclr.py (see the notes there).
  c.model = ml_collections.ConfigDict(dict(name="resnet", depth=10, width=16, stem="small",
                                           variant="", pool="gap"))
  c.model.dtype = c.get_ref("compute_dtype")
  c.input_norm = "per_image"
  # queue_size must be a multiple of batch_size. A 4096-key queue is 16 batches old at most; the
  # momentum is lower than the paper's 0.999, whose key encoder would average over more steps
  # than the whole CPU run has.
  c.moco_v2 = ml_collections.ConfigDict(dict(proj_hidden_dim=512, proj_dim=128, queue_size=4096,
                                             momentum=0.99, temperature=0.2))
  # Small images: no blur, SimCLR's stronger colour jitter (as configs/simclr.py).
  small = view(crop_scale=(0.3, 1.0), blur_prob=0.0, brightness=0.8, contrast=0.8, saturation=0.8,
               hue=0.2)
  c.augment = ml_collections.ConfigDict(dict(view1=small, view2=small.copy_and_resolve_references()))

  # SGD as in the paper, at solo-learn's CIFAR-10 rate (0.3 x batch/256). A step forwards one view
  # through each encoder, about 2/3 of SimCLR's step time.
  c.batch_size = 256
  c.total_steps = 450
  c.log_every = 20
  c.ckpt_every = 200
  c.eval_every = 0
  c.optimizer.name = "sgd"
  c.optimizer.base_lr = 0.3
  c.optimizer.warmup_steps = 20
  c.optimizer.weight_decay = 1e-4

  if not arg:  # CPU default only (:quick and :full keep the values above)
    # On `shapes` (one run each): T = 0.2, crops of 30-100%, 450 steps: kNN 0.276; SimCLR's
    # T = 0.1, crops of 50-100% (as configs/byol.py: the objects fill 50-90% of the image) and
    # 600 steps, which the one-view-per-encoder step affords (6 min 47 s in all): 0.3455.
    c.moco_v2.temperature = 0.1
    c.augment.view1.crop_scale = c.augment.view2.crop_scale = (0.5, 1.0)
    c.total_steps = 600

  if arg == "quick":  # a few seconds: tests and smoke runs
    c.model.depth, c.model.width = 10, 8
    c.moco_v2.proj_hidden_dim, c.moco_v2.proj_dim, c.moco_v2.queue_size = 64, 32, 256
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 32, 6, 2, 3
    c.data.image_size = 16
    c.eval.num_train, c.eval.num_test, c.eval.linear_steps = 256, 128, 50
  elif arg == "full":  # the paper's recipe: ResNet-50, ImageNet, 256 batch, SGD, 200 epochs
    c.dataset = "tfds"
    c.data.tfds_name = "imagenet2012"
    c.data.image_size = 224
    c.data.num_workers = 32
    c.model.depth, c.model.width, c.model.stem = 50, 64, "imagenet"
    c.input_norm = "fixed"
    c.moco_v2.proj_hidden_dim, c.moco_v2.proj_dim = 2048, 128
    c.moco_v2.queue_size, c.moco_v2.momentum = 65536, 0.999
    c.augment.view1, c.augment.view2 = view(), view()
    c.total_steps = 200 * IMAGENET_EXAMPLES // 256
    c.log_every, c.ckpt_every, c.eval_every = 100, 5000, 20000
    # lr 0.03 (batch 256), weight decay 1e-4, cosine decay without warm-up.
    c.optimizer.base_lr, c.optimizer.weight_decay, c.optimizer.warmup_steps = 0.03, 1e-4, 0
    c.compute_dtype = "bfloat16"
    c.eval.num_train, c.eval.num_test = 50_000, 10_000
  elif arg:
    raise ValueError(f"configs/moco_v2.py: unknown variant {arg!r} (use '', 'quick' or 'full')")
  return c
