"""VideoMAE (Tong et al., NeurIPS 2022): masked-tubelet reconstruction with a video ViT.

  python -m jaxssl.main --config=configs/videomae.py          # CPU default: built-in avshapes clips
  python -m jaxssl.main --config=configs/videomae.py:quick    # seconds; smoke tests
  python -m jaxssl.main --config=configs/videomae.py:full     # ViT-B, 16x224x224, Kinetics-400

The multimodal evaluator reports the linear probe of the video features (linear/video/top1) and
draws plots/reconstructions.png.
"""
import ml_collections

from configs import mae
from jaxssl import config_base
from jaxssl.data import avshapes
from jaxssl.methods import _multimodal


def get_config(arg=""):
  c = config_base.base_config()
  c.method = "videomae"
  c.dataset = "avshapes"
  c.eval.name = "multimodal"
  c.data.update(dict(num_frames=8, fps=8.0, sample_rate=8000, num_captions=3,
                     max_caption_len=avshapes.DEFAULT_MAX_CAPTION_LEN,
                     vocab_size=avshapes.VOCAB_SIZE))
  # CPU default: ViT-mu on 2x4x4 tubelets of the 8-frame 32x32 clips (256 tokens; the 90% tube
  # mask leaves 6 positions of each frame pair, 24 tokens), mean-pooled as VideoMAE.
  c.model = ml_collections.ConfigDict(dict(name="vit", variant="mu/4", pool="gap",
                                           posemb="sincos2d", dropout=0.0, remat=False,
                                           scan_layers=False, tubelet=2))
  c.model.dtype = c.get_ref("compute_dtype")
  c.input_norm = "fixed"
  mae.add_mae_config(c, mask_ratio=0.9, decoder=(48, 2, 3))  # 3D sin-cos: width % 6 == 0.
  # MAE's per-patch target, not VideoMAE's per-channel one (`:full`): avshapes' flat, noisy
  # backgrounds make a 2x4x4 tubelet's channels noise once normalised one by one. Measured, 100
  # steps: per-channel target loss 0.96 = the mean-patch loss (nothing learnt); per patch 0.44
  # against 0.97.
  c.mae.masking = "tube"
  # One random resized crop and flip per clip, no colour change (VideoMAE's multi-scale crop).
  c.augment = _multimodal.clip_view(crop_scale=(0.5, 1.0), jitter_prob=0.0)

  c.batch_size = 64
  c.total_steps = 400
  c.log_every = 25
  c.ckpt_every = 200
  c.optimizer.name = "adamw"
  c.optimizer.base_lr = 6e-3  # Per 256: 1.5e-3 for this batch of 64, configs/mae.py's rate.
  c.optimizer.b2 = 0.95
  c.optimizer.weight_decay = 0.05
  c.optimizer.warmup_steps = 25

  if arg == "quick":
    c.data.update(dict(num_frames=4, image_size=16, sample_rate=4000, num_train=512,
                       num_test=128))
    c.model.variant = "mu/8"
    c.mae.decoder_width, c.mae.decoder_depth, c.mae.decoder_heads = 24, 1, 2
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 16, 6, 2, 3
    c.eval.num_train, c.eval.num_test, c.eval.linear_steps = 256, 128, 50
  elif arg == "full":
    # ViT-B/16 on 16 frames of 224x224 (tubelets 2x16x16: 1568 tokens, 156 visible), decoder of
    # 4 blocks, 384 wide, 6 heads; Kinetics-400 clips converted with `python -m
    # jaxssl.data.convert` (every 4th frame of 30 fps video: 7.5 fps). 800 epochs of 1024 clips,
    # base lr 1.5e-4 per 256, AdamW (0.9, 0.95), weight decay 0.05, 40 warm-up epochs.
    c.dataset = "av_records"
    c.data.update(dict(num_frames=16, fps=7.5, image_size=224, num_workers=32))
    c.model.variant = "base/16"
    c.mae.norm_per_channel = True
    c.mae.decoder_width, c.mae.decoder_depth, c.mae.decoder_heads = 384, 4, 6
    c.augment = _multimodal.clip_view(crop_scale=(0.25, 1.0), jitter_prob=0.0)
    epoch = 240_000 // 1024
    c.batch_size, c.total_steps = 1024, 800 * epoch
    c.log_every, c.ckpt_every, c.eval_every = 100, 2000, 50 * epoch
    c.optimizer.base_lr, c.optimizer.warmup_steps = 1.5e-4, 40 * epoch
    c.compute_dtype = "bfloat16"
    c.model.remat = True  # 1568-token clips: recompute activations to fit the batch.
    c.eval.num_train, c.eval.num_test = 50_000, 10_000
  elif arg:
    raise ValueError(f"configs/videomae.py: unknown variant {arg!r} (use '', 'quick' or 'full')")
  return c
