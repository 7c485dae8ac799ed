"""MMV (Alayrac et al., "Self-Supervised MultiModal Versatile Networks", NeurIPS 2020).

  python -m jaxssl.main --config=configs/mmv.py            # CPU default: procedural avshapes clips
  python -m jaxssl.main --config=configs/mmv.py:quick      # seconds; smoke tests
  python -m jaxssl.main --config=configs/mmv.py:full       # the paper's recipe (TPU/GPU)

Keys beyond config_base: the clip shapes (data.*), encoders (video, audio, text) and per-clip
augmentation shared with configs/milnce.py (set by jaxssl/methods/_multimodal.py's `add_config`),
and mmv (embedding graph, dimensions, temperatures, loss weights).
"""
import ml_collections

from jaxssl import config_base
from jaxssl.methods import _multimodal


def get_config(arg=""):
  c = config_base.base_config()
  c.method = "mmv"
  _multimodal.add_config(c, arg)
  # fac: the paper's best graph, unit loss weights and (`:full`) temperature 0.07 for both terms,
  # as in the paper. temperature: the video-text term's; temperature_va: the video-audio term's.
  # On the CPU default 0.1 for both measured better than 0.07 (one run each: t2v R@1 0.268 ->
  # 0.256, a2v 0.105 -> 0.134, median ranks 3 / 10 -> 3 / 6). Once the sound told the colour
  # (avshapes_audio.RESONANCE_HZ), a sharper video-audio softmax kept the motion learnt: video
  # VA motion probe 0.55 -> 0.73, t2v / a2v 0.415 / 0.284 -> 0.502 / 0.375 (README).
  c.mmv = ml_collections.ConfigDict(dict(graph="fac", va_dim=128, vat_dim=64, temperature=0.1,
                                         temperature_va=0.05, weight_va=1.0, weight_vt=1.0,
                                         caption_negatives=0))
  # caption_negatives: > 0 adds that many captions of earlier batches to every clip's video-text
  # denominator (jaxssl.methods.mmv; a multiple of batch_size). 0 is the paper's loss.
  c.batch_size = 96
  # 450 steps fit the 10 minutes since the 3-frame video stem runs as a 2D conv over stacked
  # frames (jaxssl.models.resnet.FrameStackConv: step 1391 -> 914 ms). 300 -> 450 steps: t2v /
  # a2v R@1 0.502 / 0.375 -> 0.586 / 0.495; the video probe stayed at 0.240. The CPU default
  # runs 700 (below).
  c.total_steps = 450
  c.log_every = 20
  c.ckpt_every = 100
  c.optimizer.name = "adamw"
  c.optimizer.base_lr = 1.6e-2  # Per 256 clips (linear scaling); Adam, as the paper.
  # Measured (t2v R@1 over 2,000 test clips): base_lr 1e-3, 150 steps: 0.009; 2e-3, 300 steps:
  # 0.047; 8e-3 with the 3-frame video stem, 150 steps: 0.050, 300 steps: 0.147. Over 1,000,
  # with the bypass and no augmentation (t2v / a2v): 8e-3: 0.229 / 0.081; 1.6e-2: 0.268 /
  # 0.105; 3.2e-2: 0.193 / 0.110.
  c.optimizer.warmup_steps = 20
  c.optimizer.weight_decay = 0.0
  if arg != "full":  # avshapes (the paper's inputs and augmentation for real videos: `:full`).
    # The video trunk sees standardised frames and the heads get the clip's colours beside its
    # features (jaxssl.methods._multimodal.ColourBypass). Measured (one run each, 2-core CPU,
    # R@1 over 1,000 test clips, with crops and jitter): colours given to the trunk too (and
    # the soundtrack before motion and ambience were audible), batch 128: t2v 0.236, a2v 0.034,
    # 12 min 00 s; bypass, batch 96, 300 steps: 0.190 / 0.094, 8 min 27 s; batch 64, 440
    # steps: 0.149 / 0.079; without augmentation, batch 128 x 225 steps and 96 x 300: 0.221 /
    # 0.087 and 0.229 / 0.081.
    c.input_norm = "per_image+mean"
    c.video.colour_bypass = True
    # Each frame beside its difference from the previous one (jaxssl.methods._multimodal.
    # FrameDifferences): video probes of motion 0.51 -> 0.77 and speed 0.64 -> 0.89; t2v R@1
    # 0.256 -> 0.420, a2v 0.134 -> 0.187, 7 min 18 s -> 8 min 26 s.
    c.video.frame_differences = True
    # No augmentation on the CPU default: the positives are other modalities, not other views,
    # and in a 300-step run crops and jitter only slow learning down (one run each: t2v R@1
    # 0.190 -> 0.229, a2v 0.094 -> 0.081, video probe 0.241 -> 0.235). `:full` keeps MMV's.
    c.augment = _multimodal.clip_view(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                                      flip_prob=0.0, brightness=0.0, contrast=0.0,
                                      saturation=0.0, hue=0.0)

  if not arg:  # Retrieval over 1,000 held-out clips, probes fit on 2,000.
    c.eval.num_test, c.eval.num_train = 1000, 2000
    # 960 negative captions from the last 10 batches, re-embedded each step (one run each, R@1
    # t2v / a2v, video probe): none 0.420 / 0.187, 0.233; 960: 0.473 / 0.215, 0.225, +4% step
    # time; 2880: 0.444 / 0.202, 0.231. The probe showed the class still unlearnt (below).
    c.mmv.caption_negatives = 960
    # Scenes of 2 (jaxssl.data.avshapes): every clip meets a negative that differs from it
    # only in the object's class (and the nuisances), in frames, sound and captions alike, so
    # the class must be learnt. The 3D video stem strides 2 in time, as I3D's and S3D's (the
    # blocks see 4 frames of 3-frame stacks: video tower forward + backward 1.83 -> 0.78 s), so
    # 700 steps fit where 450 did, and the audio ResNet is half as wide. One run per seed,
    # t2v / a2v R@1 and video probe minus random init (points):
    #   independent clips, 450 steps, seed 0:   0.586 / 0.495, +6.9
    #   scenes of 2, 450 steps, seeds 0, 1:     0.448 / 0.354, +11.2; 0.452 / 0.334, +16.7
    #   + time stride, 700 steps, seeds 0-2:   0.689 / 0.540, +24.3; 0.676 / 0.632, +18.4;
    #                                           0.587 / 0.522, +17.2
    #   + audio width 8 (16 before), seeds 1, 2: 0.707 / 0.555, +21.9; 0.691 / 0.601, +22.0
    # Not kept (scenes of 2, 450 steps, seed 0): video-audio weight 2: 0.369 / 0.278, +10.0;
    # base_lr 3.2e-2: 0.289 / 0.215, +12.3. The seed-0 run of this default: README.
    c.data.scene_size = 2
    c.video.stem_time_strides = 2
    c.total_steps = 700
    c.audio.width = 8
  elif arg == "quick":
    c.mmv.va_dim, c.mmv.vat_dim = 16, 8
    c.batch_size, c.total_steps, c.log_every, c.ckpt_every = 16, 6, 2, 3
  elif arg == "full":
    # 512-d VA and 256-d VAT spaces; Adam at 0.002 for the 4096-clip batch (base_lr is per
    # 256), 5k warm-up steps then cosine decay, 500k steps.
    c.mmv.va_dim, c.mmv.vat_dim = 512, 256
    c.batch_size = 4096
    c.total_steps = 500_000
    c.log_every, c.ckpt_every, c.eval_every = 100, 5000, 50_000
    c.optimizer.base_lr, c.optimizer.warmup_steps = 0.002 * 256 / 4096, 5000
    c.mmv.temperature = c.mmv.temperature_va = 0.07
  return c
