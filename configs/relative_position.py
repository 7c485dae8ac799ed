"""Context prediction: the relative position of two patches (Doersch et al., ICCV 2015), a
classic pretext task.

  python -m jaxssl.main --config=configs/relative_position.py          # CPU default: built-in shapes, minutes
  python -m jaxssl.main --config=configs/relative_position.py:quick    # seconds; smoke tests
  python -m jaxssl.main --config=configs/relative_position.py:full     # the paper's patch geometry on ImageNet
"""
import ml_collections

from jaxssl import augment, config_base

IMAGENET_EXAMPLES = 1_281_167


def view(**overrides):
  """The image the grid is cut from (jaxssl.augment.simclr_view): a crop and a flip, no colour
  changes (colour dropping, per patch, is the method's own)."""
  v = augment.default_view_config()
  v.update(dict(crop_scale=(0.5, 1.0), jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0))
  v.update(overrides)
  return v


def get_config(arg=""):
  c = config_base.base_config()
  c.method = "relative_position"

  # CPU default: the encoder and input normalisation of configs/simclr.py (see the reasons there).
  c.model = ml_collections.ConfigDict(dict(name="resnet", depth=10, width=16, stem="small",
                                           variant="", pool="gap"))
  c.model.dtype = c.get_ref("compute_dtype")
  c.input_norm = "per_image"
  # The paper's geometry scaled from 96-pixel patches, 48-pixel gaps and 7-pixel jitter to fill
  # a 32-pixel image: 3 x 8 + 2 x 3 + 2 x 1 = 32.
  c.relative_position = ml_collections.ConfigDict(dict(
      patch_size=8, gap=3, jitter=1, color_dropping=True, head_hidden_dim=256, head_layers=2))
  c.augment = ml_collections.ConfigDict(dict(view=view()))

  # 9 patches and 8 pairs per image. Patches of 8 pixels are cheap (~1,800 images/s on 2 cores),
  # hence many steps. SGD as configs/rotation.py; one run each on `shapes`, 450 steps at lr 0.1:
  # position accuracy 0.29, kNN 0.2845 (whole-image embedding); 3,000 steps at lr 0.25: 0.50.
  c.batch_size = 128
  c.total_steps = 3000
  c.log_every = 100
  c.ckpt_every = 1000
  c.eval_every = 0
  c.optimizer.name = "sgd"
  c.optimizer.base_lr = 0.5
  c.optimizer.warmup_steps = 20
  c.optimizer.weight_decay = 5e-4

  if arg == "quick":  # a few seconds: tests and smoke runs
    c.model.depth, c.model.width = 10, 8
    c.relative_position.update(dict(patch_size=4, gap=1, jitter=1, head_hidden_dim=32))
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 16, 6, 2, 3
    c.data.image_size = 16
    c.eval.num_train, c.eval.num_test, c.eval.linear_steps = 256, 128, 50
  elif arg == "full":  # the paper's patch geometry (96-pixel patches, 48-pixel gaps, 7-pixel
    # jitter: a 398-pixel grid) on ImageNet with a ResNet-50 (the paper: AlexNet- and VGG-style
    # networks), SGD with momentum
    c.dataset = "tfds"
    c.data.tfds_name = "imagenet2012"
    c.data.image_size = 398
    c.data.num_workers = 32
    c.model.depth, c.model.width, c.model.stem = 50, 64, "imagenet"
    c.input_norm = "fixed"
    c.relative_position.update(dict(patch_size=96, gap=48, jitter=7, head_hidden_dim=4096,
                                    head_layers=3))
    c.augment.view = view(crop_scale=(0.3, 1.0))
    c.batch_size = 256
    c.total_steps = 100 * IMAGENET_EXAMPLES // 256
    c.log_every, c.ckpt_every, c.eval_every = 100, 5000, 20000
    c.optimizer.base_lr, c.optimizer.warmup_steps = 0.1, 1000
    c.compute_dtype = "bfloat16"
    c.eval.num_train, c.eval.num_test = 50_000, 10_000
  elif arg:
    raise ValueError(f"configs/relative_position.py: unknown variant {arg!r} (use '', 'quick' or "
                     "'full')")
  return c
