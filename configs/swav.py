"""SwAV (Caron et al., NeurIPS 2020).

  python -m jaxssl.main --config=configs/swav.py           # CPU default: built-in shapes, minutes
  python -m jaxssl.main --config=configs/swav.py:quick     # seconds; smoke tests
  python -m jaxssl.main --config=configs/swav.py:full      # the paper's ImageNet recipe (TPU/GPU)
"""
import ml_collections

from jaxssl import augment, config_base

IMAGENET_EXAMPLES = 1_281_167


def view(**overrides):
  """One augmentation pipeline (jaxssl.augment.simclr_view); defaults = SwAV's ImageNet crops
  (SimCLR's colour distortion of strength 1: jitter 0.8/0.8/0.8/0.2 with p=0.8, blur p=0.5)."""
  v = augment.default_view_config()
  v.update(dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, crop_scale=(0.14, 1.0)))
  v.update(overrides)
  return v


def get_config(arg=""):
  c = config_base.base_config()
  c.method = "swav"

  # CPU default: the encoder and input normalisation of configs/simclr.py (see the notes there).
  c.model = ml_collections.ConfigDict(dict(name="resnet", depth=10, width=16, stem="small",
                                           variant="", pool="gap"))
  c.model.dtype = c.get_ref("compute_dtype")
  c.input_norm = "per_image"
  c.swav = ml_collections.ConfigDict(dict(
      proj_hidden_dim=512, proj_dim=128,
      # The paper's 3000 prototypes are for ImageNet and large batches: without a queue the
      # equipartition constraint spreads each batch over the prototypes, so K stays below B.
      num_prototypes=128,
      temperature=0.1, epsilon=0.05, sinkhorn_iterations=3,
      freeze_prototypes_steps=10,  # the prototypes get no gradient for the first steps
  ))
  # Multi-crop: two global crops at data.image_size (the only ones that get codes) and num_local
  # local crops at local_size. Small images: no blur, crop scales of configs/simclr.py for the
  # global crops and the range just below them for the local ones (the paper's split at 0.14).
  c.augment = ml_collections.ConfigDict(dict(
      global_view=view(crop_scale=(0.3, 1.0), blur_prob=0.0),
      local=view(crop_scale=(0.1, 0.3), blur_prob=0.0), num_local=4, local_size=16))

  # A step forwards 2 global + 4 quarter-size local crops (~1.5x SimCLR's step time), so fewer
  # steps fit ~8 minutes.
  c.batch_size = 256
  c.total_steps = 300
  c.log_every = 20
  c.ckpt_every = 200
  c.eval_every = 0
  c.optimizer.name = "lars"
  c.optimizer.base_lr = 1.0
  c.optimizer.warmup_steps = 20
  c.optimizer.weight_decay = 1e-6

  if not arg:  # CPU default only (:quick and :full keep the values above)
    # Sharper codes. With the paper's epsilon = 0.05 the swapped-prediction loss sat at ln(K) =
    # 4.852 from step ~60 on (uniform predictions; run stopped at step 100); with 0.03 it keeps
    # decreasing (4.61 at step 300), kNN 0.3085: learning, but below the issue-#4 target.
    # Larger crops (global 50-100%, local 20-50%; the lever for BYOL/SimSiam/MoCo v2) lower the
    # loss further (4.38 at step 300) but not kNN: 0.3075 (linear 0.316, ~7 min wall); with them
    # and LARS at 5.0 (as configs/byol.py): loss 4.2, kNN 0.330, linear 0.372 (~7 min wall).
    # Kept: those global crops and LARS at 5.0 without the local crops, whose cost (1.5x a
    # SimCLR step) buys 450 steps instead of 300 in the same time: swav_loss 3.19 at step 360,
    # kNN 0.624, linear 0.7315 (6 min 48 s of training, 7 min 30 s wall).
    c.swav.epsilon = 0.03
    c.augment.global_view.crop_scale = (0.5, 1.0)
    c.augment.num_local = 0
    c.optimizer.base_lr = 5.0
    c.total_steps = 450

  if arg == "quick":  # a few seconds: tests and smoke runs
    c.model.depth, c.model.width = 10, 8
    c.swav.proj_hidden_dim, c.swav.proj_dim, c.swav.num_prototypes = 64, 32, 16
    c.swav.freeze_prototypes_steps = 3
    c.augment.num_local, c.augment.local_size = 2, 8
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 32, 6, 2, 3
    c.data.image_size = 16
    c.eval.num_train, c.eval.num_test, c.eval.linear_steps = 256, 128, 50
  elif arg == "full":  # the paper's recipe: ResNet-50, ImageNet, 4096 batch, LARS, 800 epochs
    c.dataset = "tfds"
    c.data.tfds_name = "imagenet2012"
    c.data.image_size = 224
    c.data.num_workers = 32
    c.model.depth, c.model.width, c.model.stem = 50, 64, "imagenet"
    c.input_norm = "fixed"
    c.swav.proj_hidden_dim, c.swav.proj_dim, c.swav.num_prototypes = 2048, 128, 3000
    c.swav.freeze_prototypes_steps = 313
    c.augment.global_view = view()
    c.augment.local = view(crop_scale=(0.05, 0.14))
    c.augment.num_local, c.augment.local_size = 6, 96
    c.batch_size = 4096
    c.total_steps = 800 * IMAGENET_EXAMPLES // 4096
    c.log_every, c.ckpt_every, c.eval_every = 100, 2000, 5000
    # lr 4.8 = 0.3 x 4096/256. The paper's warm-up starts at 0.3 and its cosine ends at 0.0048
    # (0 to 4.8 and down to 0 here).
    c.optimizer.base_lr, c.optimizer.warmup_steps = 0.3, 10 * IMAGENET_EXAMPLES // 4096
    c.compute_dtype = "bfloat16"
    c.eval.num_train, c.eval.num_test = 50_000, 10_000
  elif arg:
    raise ValueError(f"configs/swav.py: unknown variant {arg!r} (use '', 'quick' or 'full')")
  return c
