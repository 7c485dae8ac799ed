"""What the video-audio-text methods (MMV, MIL-NCE) share. Not a method.

Config keys they read (defaults per variant in `add_config`, used by configs/mmv.py and
configs/milnce.py):
  data.{image_size, num_frames, fps, sample_rate, num_captions, max_caption_len, vocab_size}
      the clips' shapes: video uint8 (B, num_frames, image_size, image_size, 3), audio float32
      (B, round(num_frames / fps * sample_rate)), text int32 (B, num_captions, max_caption_len).
  video.arch                           "tsm_resnet" (jaxssl.models.video) or "vit" (ViViT-style:
                                       tubelets + joint space-time attention, jaxssl.models.vit).
  video.{depth, width, stem, zero_init_residual, stem_frames, stem_time_strides}
                                       the TSM-ResNet's.
  video.{vit_variant, tubelet}         the ViT's (e.g. "mu/8": 8x8 patches; frames per token).
  video.colour_bypass                  with input_norm "per_image+mean": see `ColourBypass`.
  video.frame_differences              see `FrameDifferences`.
  audio.{depth, width, stem, zero_init_residual, num_mel_bins, frame_length, frame_step,
         lower_hz, upper_hz}           log-mel + 2D ResNet (jaxssl.models.audio).
  text.{word_dim, sentence_dim}        word embedding + MMV's text head (jaxssl.models.text).
  augment                              one view config (jaxssl.augment), applied per clip.

The multimodal embedding contract (what evaluators call), implemented once here:
  embed_modalities(params, model_state, video=None, audio=None, text=None) -> dict of float32
    arrays, jittable, no augmentation, BatchNorm in inference mode. For each modality given:
      video (B, T, H, W, 3) uint8 -> video_features (B, Dv) [+ the net's video_* embeddings]
      audio (B, L) float32        -> audio_features (B, Da) [+ audio_* embeddings]
      text  (B, Lt) int32, 0 = pad -> text_* embeddings
    Embeddings are returned unnormalised (the losses L2-normalise; so do evaluators).
  embed(params, model_state, video) -> video_features (B, Dv), for generic tools.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import augment
from jaxssl.components import online_probe
from jaxssl.data import avshapes
from jaxssl.models import vit
from jaxssl.models.audio import AudioEncoder
from jaxssl.models.text import TextEncoder
from jaxssl.models.video import VideoEncoder


def clip_view(**overrides):
  """One per-clip augmentation (jaxssl.augment.video_view): crop, flip, colour jitter, no
  grayscale or blur. Defaults: the crop and jitter ranges of MMV's data pipeline (DMVR)."""
  v = augment.default_view_config()
  v.update(dict(crop_ratio=(0.5, 2.0), grayscale_prob=0.0, blur_prob=0.0))
  v.update(overrides)
  return v


def add_config(c, arg):
  """Sets the keys above (and dataset, eval.name, input_norm) on config `c` for variant `arg`
  ("", "quick" or "full"); configs/mmv.py and configs/milnce.py share them."""
  c.dataset = "avshapes"
  c.eval.name = "multimodal"
  # avshapes defaults: 8 frames of 32x32 at 8 fps and 1 s of 8 kHz audio per clip.
  c.data.update(dict(num_frames=8, fps=8.0, sample_rate=8000, num_captions=3,
                     max_caption_len=avshapes.DEFAULT_MAX_CAPTION_LEN,
                     vocab_size=avshapes.VOCAB_SIZE))
  # CPU: the ResNet-10 of the image configs, per frame (TSM) and on the spectrogram. 32 ms
  # frames every 16 ms resolve the class pitches (3.2 semitones apart from 150 Hz) in 40 bands.
  # Adam moves a zero-initialised residual scale by ~lr per step, which stalls short runs
  # (jaxssl.models.resnet), so the CPU encoders start with every block's branch on. The video
  # stem is a 3x3x3 conv over neighbouring frames: motion is then seen from the first layer
  # (supervised motion probe after 60 steps: 0.72 -> 0.77; MMV video features after 150-300
  # steps: motion 0.25 -> 0.33).
  c.video = ml_collections.ConfigDict(dict(arch="tsm_resnet", depth=10, width=16, stem="small",
                                           zero_init_residual=False, stem_frames=3,
                                           stem_time_strides=1,
                                           vit_variant="mu/8", tubelet=2,
                                           colour_bypass=False, frame_differences=False))
  c.audio = ml_collections.ConfigDict(dict(depth=10, width=16, stem="small", num_mel_bins=40,
                                           frame_length=256, frame_step=128, lower_hz=80.0,
                                           upper_hz=4000.0, zero_init_residual=False))
  c.text = ml_collections.ConfigDict(dict(word_dim=64, sentence_dim=256))
  # avshapes' captions and sounds name the object's colour, size and direction of motion, so
  # the clip augmentation must keep them: no flip (left <-> right), no hue change, crops of at
  # least 70% (a zoom of at most 1.2x keeps "small" objects smaller than "big" ones).
  c.augment = clip_view(crop_scale=(0.7, 1.0), crop_ratio=(0.9, 1.1), flip_prob=0.0,
                        brightness=0.2, contrast=0.2, saturation=0.2, hue=0.0)
  c.input_norm = "fixed"

  if arg == "quick":
    c.data.update(dict(num_frames=4, image_size=16, sample_rate=4000, num_train=512,
                       num_test=128))
    c.video.width = c.audio.width = 4
    c.audio.update(dict(num_mel_bins=16, frame_length=128, frame_step=64, upper_hz=2000.0))
    c.text.update(dict(word_dim=16, sentence_dim=32))
    c.eval.num_train, c.eval.num_test, c.eval.linear_steps = 256, 128, 50
  elif arg == "full":
    # The paper's inputs: 32 frames at 10 fps (3.2 s) cropped to 200x200, 48 kHz audio as an
    # 80-band log-mel spectrogram (2048-sample frames every 1024), K = 5 candidate narrations
    # of at most 16 words over the 66,250-word word2vec vocabulary of MIL-NCE. HowTo100M and
    # AudioSet clips come converted (`python -m jaxssl.data.convert`, --config.data.data_dir).
    c.dataset = "av_records"
    c.data.update(dict(num_frames=32, fps=10.0, image_size=200, sample_rate=48_000,
                       num_captions=5, max_caption_len=16, vocab_size=66_250, num_workers=32))
    # TSM-ResNet50; zero-initialised residual scales for the 4096-clip batch's warm-up.
    c.video.update(dict(depth=50, width=64, stem="imagenet", zero_init_residual=True,
                        stem_frames=1))
    c.audio.update(dict(depth=50, width=64, stem="imagenet", zero_init_residual=True,
                        num_mel_bins=80, frame_length=2048, frame_step=1024, lower_hz=80.0,
                        upper_hz=7600.0))
    c.text.update(dict(word_dim=300, sentence_dim=2048))
    c.augment = clip_view(crop_scale=(0.08, 1.0))
    c.compute_dtype = "bfloat16"
    c.eval.num_train, c.eval.num_test = 50_000, 10_000
  elif arg:
    raise ValueError(f"unknown variant {arg!r} (use '', 'quick' or 'full')")


def audio_length(data_config) -> int:
  """Samples per clip, as `jaxssl.data.avshapes` derives it: the clip's duration at the rate."""
  return int(round(data_config.num_frames / data_config.fps * data_config.sample_rate))


VIDEO_ARCHS = ("tsm_resnet", "vit")


class ColourBypass(nn.Module):
  """A video encoder for `input_norm="per_image+mean"` clips (6 channels: standardised frames,
  then each frame's mean colour as constant planes). The wrapped `encoder` sees only the
  standardised frames; the clip's mean colour and its std over time join its features.

  Why: given the colours, the trunk matches most clips to their audio and captions by colour
  alone (object and background), and shape and motion are then learnt slowly; standardised
  frames leave it only the object against its background to learn from, while the heads
  still get the colours the captions and sounds name.
  """
  encoder: nn.Module

  @nn.compact
  def __call__(self, video, train: bool):
    if video.shape[-1] != 6:
      raise ValueError(f"ColourBypass needs input_norm='per_image+mean' clips (6 channels), "
                       f"got {video.shape[-1]}")
    colour = video[:, :, 0, 0, 3:]  # (B, T, 3): the constant planes' values.
    features = self.encoder(video[..., :3], train=train)
    return jnp.concatenate([features, jnp.mean(colour, 1), jnp.std(colour, 1)], axis=-1)


class FrameDifferences(nn.Module):
  """Feeds `encoder` each frame beside its difference from the previous frame (zero for the
  first), as TSN's RGB-difference input: motion and its speed are then visible to the first
  layer instead of being learnt from neighbouring frames."""
  encoder: nn.Module

  @nn.compact
  def __call__(self, video, train: bool):
    previous = jnp.concatenate([video[:, :1], video[:, :-1]], axis=1)
    return self.encoder(jnp.concatenate([video, video - previous], axis=-1), train=train)


def video_encoder(config):
  v = config.video
  if v.arch not in VIDEO_ARCHS:
    raise ValueError(f"config.video.arch={v.arch!r}: choose one of {VIDEO_ARCHS}")
  if v.colour_bypass and config.input_norm != "per_image+mean":
    raise ValueError("config.video.colour_bypass needs --config.input_norm=per_image+mean, got "
                     f"{config.input_norm!r}")
  encoder = _trunk(config)
  encoder = FrameDifferences(encoder) if v.frame_differences else encoder
  return ColourBypass(encoder) if v.colour_bypass else encoder


def _trunk(config):
  v = config.video
  if v.arch == "vit":  # ViViT's tubelet embedding + joint space-time attention, mean pooled.
    return vit.ViT(**vit.vit_config(v.vit_variant), tubelet=v.tubelet, pool="gap",
                   dtype=jnp.dtype(config.compute_dtype))
  return VideoEncoder(v.depth, v.width, v.stem, jnp.dtype(config.compute_dtype),
                      zero_init_residual=v.zero_init_residual, stem_frames=v.stem_frames,
                      stem_time_strides=v.stem_time_strides)


def audio_encoder(config):
  a = config.audio
  return AudioEncoder(sample_rate=config.data.sample_rate, frame_length=a.frame_length,
                      frame_step=a.frame_step, num_mel_bins=a.num_mel_bins, lower_hz=a.lower_hz,
                      upper_hz=a.upper_hz, depth=a.depth, width=a.width, stem=a.stem,
                      dtype=jnp.dtype(config.compute_dtype),
                      zero_init_residual=a.zero_init_residual)


def text_encoder(config):
  return TextEncoder(config.data.vocab_size, config.text.word_dim, config.text.sentence_dim,
                     jnp.dtype(config.compute_dtype))


class VideoProbeMixin:
  """`probe` and `init_all` of a multimodal net (see `MultimodalMethod`) whose `online_probe`
  (an `online_probe.OnlineProbe`, or None for unlabelled data) reads its video features."""

  def probe(self, features):
    return self.online_probe(features)

  def init_all(self, train, **inputs):
    out = self(train, **inputs)
    return self.probe(out["video_features"]) if self.online_probe else out


def maybe_online_probe(num_classes):
  """The video features' online probe; unlabelled data (num_classes 0, e.g. converted clips
  without labels) has none."""
  return online_probe.OnlineProbe(num_classes) if num_classes else None


class MultimodalMethod:
  """Base of a multimodal method over a flax `net` whose `__call__(train, **inputs)` maps any
  subset of {video, audio, text} model inputs to a dict of features/embeddings, and which has
  `probe(video_features)` (online linear probe, absent when num_classes is 0) and
  `init_all(train, **inputs)`.

  Subclasses set `modalities` and write `loss` from `forward` and `probe_loss`.
  """
  modalities = ("video", "audio", "text")

  def __init__(self, config, data_info, net):
    self.config, self.net = config, net
    self.image_size, self.num_classes = data_info.image_size, data_info.num_classes

  def init(self, rng):
    d = self.config.data
    s = d.image_size
    dummy = dict(video=self._video_input(jnp.zeros((2, d.num_frames, s, s, 3), jnp.float32)),
                 audio=jnp.zeros((2, audio_length(d)), jnp.float32),
                 text=jnp.zeros((2, d.num_captions, d.max_caption_len), jnp.int32))
    return self.net.init(rng, train=False, method="init_all",
                         **{m: dummy[m] for m in self.modalities})

  def _video_input(self, video):
    return augment.model_input(video, self.config.input_norm)

  def train_inputs(self, rng, batch):
    """Model inputs of a training batch: clips augmented on device (one crop, flip and jitter
    per clip), waveforms and token ids as they come."""
    video = augment.video_view(rng, batch["video"], out_size=self.image_size,
                               cfg=self.config.augment)
    inputs = {"video": self._video_input(video)}
    inputs.update({m: batch[m] for m in self.modalities if m != "video"})
    return inputs

  def forward(self, params, model_state, inputs):
    """Train-mode outputs of `net` on `inputs` and the new model state (batch statistics)."""
    out, updates = self.net.apply({"params": params, **model_state}, train=True,
                                  mutable=["batch_stats"], **inputs)
    return out, {**model_state, **updates}

  def probe_loss(self, params, video_features, labels):
    """The online probe's loss (stop-gradient features, so labels never reach the encoders)
    and {"probe_acc": ...}; (0, {}) for unlabelled data."""
    if not self.num_classes:
      return 0.0, {}
    logits = self.net.apply({"params": params}, video_features, method="probe")
    return online_probe.probe_loss(logits, labels)

  def embed_modalities(self, params, model_state, video=None, audio=None, text=None):
    given = dict(video=video, audio=audio, text=text)
    unknown = [m for m, x in given.items() if x is not None and m not in self.modalities]
    if unknown:
      raise ValueError(f"{type(self).__module__} embeds {self.modalities}, not {unknown}")
    inputs = {m: x for m, x in given.items() if x is not None}
    if "video" in inputs:
      b, t, h, w, c = video.shape
      frames = augment.center_view(video.reshape(b * t, h, w, c), out_size=self.image_size)
      inputs["video"] = self._video_input(frames.reshape((b, t) + frames.shape[1:]))
    out = self.net.apply({"params": params, **model_state}, train=False, **inputs)
    return jax.tree.map(lambda x: x.astype(jnp.float32), out)

  def embed(self, params, model_state, video):
    return self.embed_modalities(params, model_state, video=video)["video_features"]
