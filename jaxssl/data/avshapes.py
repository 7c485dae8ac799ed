"""Procedural audio-visual-text clips ("avshapes") for multimodal SSL (MMV, MIL-NCE).

Why: multimodal contrastive learning is only tested if the modalities share hidden causes that
no single raw input shows plainly. Each clip is one object (a `shapes` class) that moves in one
of six ways. Its sound tells its class, colour, size, speed and motion and the background (an
ambience per background colour), and its events (appearing, hitting a wall, bouncing, pulsing)
are audio onsets at the same instants (`avshapes_audio`); several captions name its size,
colour, shape, motion, speed and the background's colour in varied words
(`avshapes_captions`). Background texture, pixel noise, rotation, a silent distractor object
and distractor sounds vary independently, so raw pixels are weak at the object class while
audio<->video<->text agreement and audio-video sync are learnable. Retrieval is well posed:
among 1,000 clips a caption's factors nearly identify its clip (a perfect model's text->video
R@1 is 0.96), and so do the factors that are both audible and visible (audio->video 0.99; 0.96
without event timing); `retrieval_bound` measures this. Pure numpy, vectorised over frames:
~2 ms per 8x32x32 clip with 1 s of audio and 3 captions (tests/test_avshapes.py prints it).
Any record is a pure function of (seed, split, index).

Generative factors, drawn from `default_rng([seed, split, index, _STREAM])` (clip) and
`default_rng([seed, split, index, _STREAM, 1])` (caption wording):

  label      object class, uniform over `CLASS_NAMES` (the 10 shapes of `jaxssl.data.shapes`).
  motion     uniform over `MOTION_NAMES`: right, left, up, down (constant speed from near one
             wall; stops with a thud if it reaches the other), bounce (parabolic hops on the
             floor), pulse (stays put; grows by 30-50% on each beat and shrinks back).
  speed      slow or fast: 20-35% vs 60-90% of the frame per second, or a hop/beat every 4 vs
             every 2 frames. Events (appearing, contacts, beats, wall hits) fall on frame times.
  colour     uniform over the 8 `COLOUR_NAMES`, +-0.08 per-channel jitter.
  size       small or big: circumscribed diameter 36-42% vs 54-64% of the frame; rotation
             +-30 degrees, constant.
  appear     with p=0.35 the object appears at frame 1 or 2 (an event) instead of frame 0.
  background one of the 6 `BACKGROUND_NAMES` colours (never one close to the object's colour),
             +-0.05 jitter, modulated at 10-30% contrast along a random colour direction by a
             `shapes` texture that drifts by up to S/8 pixels per axis over the clip.
  distractor with p=0.5 a smaller silent object (any class, another colour), drifting slowly,
             drawn under the main one; never mentioned in captions.
  sound      see `avshapes_audio`.
  pixel noise uniform, std up to 0.04.
  captions   `num_captions` distinct phrasings (templates x determiners x synonyms).

Scenes (`scene_size` > 1, default 1): clips index // scene_size * scene_size onwards share every
draw above from `default_rng([seed, split, scene, _STREAM, 2])` (background and its texture,
colour, size, speed, motion, trajectory, event instants, sound) except the object's class, one
of a scene permutation of the classes, and the nuisances (`_CLIP_UNIFORMS`). A scene's clips are
then told apart by the class alone, and the input pipeline keeps them in one batch, so every
clip meets hard negatives (among 1,000 test clips in scenes of 4, the factors without the class
give text->video R@1 0.22 instead of 0.655).
"""
import collections

import numpy as np

from jaxssl.data import avshapes_audio, shapes
from jaxssl.data.avshapes_captions import (  # noqa: F401  (re-exported: the dataset's API)
    BACKGROUND_WORDS, COLOUR_WORDS, MAX_CAPTION_WORDS, MOTION_WORDS, SHAPE_WORDS, SIZE_WORDS,
    SPEED_WORDS, TOKENIZER, UNIFORMS_PER_CAPTION, captions_for, class_prompts)

CLASS_NAMES = shapes.CLASS_NAMES
NUM_CLASSES = shapes.NUM_CLASSES
SPLIT_IDS = shapes.SPLIT_IDS
MOTION_NAMES = ("right", "left", "up", "down", "bounce", "pulse")
NUM_MOTIONS = len(MOTION_NAMES)
COLOUR_NAMES = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
NUM_COLOURS = len(COLOUR_NAMES)
BACKGROUND_NAMES = ("grey", "brown", "pink", "teal", "beige", "navy")
_COLOUR_RGB = np.array([[.9, .1, .1], [1., .55, .05], [.95, .9, .1], [.1, .75, .2],
                        [.15, .3, .95], [.6, .15, .8], [.95, .95, .95], [.06, .06, .06]],
                       np.float32)
_BACKGROUND_RGB = np.array([[.5, .5, .5], [.45, .28, .12], [1., .65, .75], [0., .45, .45],
                            [.85, .8, .62], [.08, .1, .35]], np.float32)
# Backgrounds each object colour may appear on: at least 0.6 apart in L1 RGB distance (rules
# out white on pink and on beige, black on navy), so the object never blends in.
_BACKGROUNDS_FOR = [np.nonzero(np.abs(_BACKGROUND_RGB - c).sum(1) >= 0.6)[0].tolist()
                    for c in _COLOUR_RGB]
_STREAM = 0xA75  # Keeps this dataset's rng streams apart from `shapes`' for equal keys.
_NUM_UNIFORMS = 72
# The soundtrack's uniforms: 24 from the start, then the 3 after the distractor's.
_AUDIO_UNIFORMS = list(range(19, 43)) + list(range(69, 72))
assert len(_AUDIO_UNIFORMS) == avshapes_audio.NUM_UNIFORMS
# The nuisances each clip of a scene draws for itself: rotation (6), pixel noise (7), the
# sound's unrelated tone burst and loudness (39-42, 69-71), the colour's jitter (43-45) and the
# distractor object (60-68).
_CLIP_UNIFORMS = frozenset([6, 7, *range(39, 46), *range(60, 72)])
VOCAB_SIZE = TOKENIZER.vocab_size
DEFAULT_MAX_CAPTION_LEN = 20
assert MAX_CAPTION_WORDS <= DEFAULT_MAX_CAPTION_LEN
assert len(BACKGROUND_WORDS) == len(BACKGROUND_NAMES) and len(COLOUR_WORDS) == NUM_COLOURS


def encode(caption: str, max_len: int = DEFAULT_MAX_CAPTION_LEN) -> np.ndarray:
  return TOKENIZER.encode(caption, max_len)


def decode(ids) -> str:
  return TOKENIZER.decode(ids)


def _object_alpha(label, cx, cy, radius, angle, pix):
  """(T, S, S) coverage in [0, 1] of one object over T frames; cx, cy, radius (T,) in pixels.

  Same template lookup as `shapes.render`, over the whole frame (the per-frame window would cost
  a Python loop over frames); indices are clipped to the template, whose border lies outside
  every shape.
  """
  size = shapes._TEMPLATE_SIZE
  scale = (size - 1) / (2 * shapes._EXTENT)
  k = (scale / radius)[:, None]
  cos, sin = np.cos(angle) * k, np.sin(angle) * k
  x, y = pix - cx[:, None], pix - cy[:, None]  # (T, S)
  offset = shapes._EXTENT * scale + 0.5
  iu = np.clip((y * sin + offset)[:, :, None] + (x * cos)[:, None, :], 0, size - 1)
  iv = np.clip((y * cos + offset)[:, :, None] - (x * sin)[:, None, :], 0, size - 1)
  sdf = shapes._template(label)[iv.astype(np.intp) * size + iu.astype(np.intp)]
  return np.clip(0.5 - radius[:, None, None] * sdf, 0.0, 1.0)


def _trajectory(motion, fast, g, radius, s, t, app, fps):
  """Centre (T,), (T,), radius scale (T,), event frames and the end of the motion (s).

  g: iterator of uniforms; t: frame times (s); app: the frame the object appears in. Events
  (contacts, beats, wall hits) happen exactly at frame times, so the frame that shows an event
  is the one its audio onset starts, and bounces are seen touching the floor.
  """
  n = len(t)
  if motion >= 4:  # Bounce / pulse: an event every `period` frames from frame `first` on.
    period = 2 if fast else 4
    first = app + 1 + int(period * g())
    events = list(range(first, n, period))
    if motion == 4:  # Parabolic hops of height h on the floor (y = hi).
      lo, hi = 0.9 * radius, s - 0.9 * radius
      phase = np.mod((np.arange(n) - first) / period, 1.0)
      cy = hi - (0.5 + 0.5 * g()) * (hi - lo) * 4 * phase * (1 - phase)
      return np.full(n, lo + (hi - lo) * g()), cy, np.ones(n), events, n / fps
    # Pulse: the size jumps by `amp` on each beat and decays back (time constant 0.12 s).
    amp = 0.3 + 0.2 * g()
    margin = min(0.9 * radius * (1 + amp), s / 2 - 0.5)
    cx, cy = (np.full(n, margin + (s - 2 * margin) * g()) for _ in range(2))
    beats = np.asarray(events, np.float32) / fps
    last = np.concatenate([[-1e3], beats])[np.searchsorted(beats, t, side="right")]
    return cx, cy, 1 + amp * np.exp((last - t) / 0.12), events, app / fps
  # Linear: constant speed from near one wall; stops (a thud) if it reaches the other, with the
  # speed nudged so that this happens at a frame.
  lo, hi = 0.9 * radius, s - 0.9 * radius
  speed = ((0.6 + 0.3 * g()) if fast else (0.2 + 0.15 * g())) * s  # Pixels per second.
  start, across = lo + 0.3 * (hi - lo) * g(), lo + (hi - lo) * g()
  hit = app + max(int(round((hi - start) / speed * fps)), 1)
  if hit < n:
    speed = (hi - start) * fps / (hit - app)
  along = np.minimum(start + speed * np.maximum(t - app / fps, 0.0), hi)
  along = along if motion in (0, 3) else s - along  # Right and down go +x, +y.
  other = np.full(n, across)
  cx, cy = (along, other) if motion < 2 else (other, along)
  return cx, cy, np.ones(n), [hit] if hit < n else [], min(hit, n) / fps


def _background(b, name, s, t):
  """(3, T, S, S) background: a named colour modulated by a drifting texture; b: 14 uniforms."""
  base = _BACKGROUND_RGB[name] + 0.1 * (np.array(b[:3], np.float32) - 0.5)
  direction = 2 * np.array(b[3:6], np.float32) - 1
  pad = max(s // 8, 1)
  tex = shapes._texture(int(b[6] * 4), (np.arange(s + 2 * pad, dtype=np.float32) + 0.5) / s,
                        np.array(b[7:11], np.float32))
  frac = t / max(t[-1], 1e-6)
  oy = (pad + np.rint(frac * pad * (2 * b[11] - 1))).astype(np.intp)[:, None, None]
  ox = (pad + np.rint(frac * pad * (2 * b[12] - 1))).astype(np.intp)[:, None, None]
  ar = np.arange(s)
  tex = tex[oy + ar[:, None], ox + ar].astype(np.float32)  # (T, S, S)
  contrast = 0.1 + 0.2 * b[13]
  return (tex - 0.5) * (contrast * direction)[:, None, None, None] + base[:, None, None, None]


def render_clip(seed: int, split: str, index: int, *, num_frames: int = 8, image_size: int = 32,
                sample_rate: int = 8000, fps: float = 8.0, num_captions: int = 3,
                max_caption_len: int = DEFAULT_MAX_CAPTION_LEN, scene_size: int = 1) -> dict:
  """One clip; see the module docstring. Clips index // scene_size * scene_size onwards form a
  scene: they differ only in the object's class (distinct within the scene) and the nuisances.

  Returns video uint8 (T, S, S, 3), audio float32 (round(T / fps * sample_rate),), captions
  (list of num_captions str), text int32 (num_captions, max_caption_len), and, for evaluation
  only: the factors label, motion, colour, size (0 small, 1 big), speed (0 slow, 1 fast),
  background (int), events uint8 (T,) (1 where an event falls in the frame) and event_times
  float32 (n,) in seconds. Frame i shows time i / fps; sample j is time j / rate.
  """
  n, s = num_frames, image_size
  if s < shapes._MIN_IMAGE_SIZE:
    raise ValueError(f"avshapes needs image_size >= {shapes._MIN_IMAGE_SIZE}, got {s}")
  if not 1 <= num_captions <= 8:
    raise ValueError(f"num_captions must be in [1, 8], got {num_captions}")
  if not 1 <= scene_size <= NUM_CLASSES:
    raise ValueError(f"scene_size must be in [1, {NUM_CLASSES}], got {scene_size}")
  key = [seed, SPLIT_IDS[split], index, _STREAM]
  rng = np.random.default_rng(key)
  u = rng.random(_NUM_UNIFORMS).tolist()
  # Fixed slices per concern, so each factor's draw does not depend on the others' branches.
  label = int(u[0] * NUM_CLASSES)
  if scene_size > 1:  # Every draw but the object's class and the nuisances is the scene's.
    scene = np.random.default_rng([seed, SPLIT_IDS[split], index // scene_size, _STREAM, 2])
    shared = scene.random(_NUM_UNIFORMS).tolist()
    u = [u[i] if i in _CLIP_UNIFORMS else shared[i] for i in range(_NUM_UNIFORMS)]
    label = int(scene.permutation(NUM_CLASSES)[index % scene_size])
  motion = int(u[1] * NUM_MOTIONS)
  colour, big, fast = int(u[2] * NUM_COLOURS), int(u[8] * 2), int(u[9] * 2)
  allowed = _BACKGROUNDS_FOR[colour]
  background = allowed[int(u[10] * len(allowed))]
  length = int(round(n / fps * sample_rate))
  t = np.arange(n, dtype=np.float32) / fps
  app = 0 if u[3] >= 0.35 or n < 4 else 1 + int(u[4] * 2)  # Frame the object appears in.
  radius = ((0.27 + 0.05 * u[5]) if big else (0.18 + 0.03 * u[5])) * s
  cx, cy, grow, events, move_end = _trajectory(motion, fast, iter(u[11:19]).__next__, radius, s,
                                               t, app, fps)
  frames = np.array(([app] if app else []) + events, np.intp)
  event_times = (frames / fps).tolist()
  audio = avshapes_audio.synth([u[i] for i in _AUDIO_UNIFORMS], rng, label=label,
                               colour=colour, big=big, fast=fast, motion=motion,
                               background=background, events=event_times, t_app=app / fps,
                               move_end=move_end, length=length, rate=sample_rate)

  pix = np.arange(s, dtype=np.float32) + 0.5
  alpha = _object_alpha(label, cx, cy, radius * grow, np.pi / 3 * (u[6] - 0.5), pix)
  alpha *= (t >= app / fps - 1e-6)[:, None, None]
  fg = np.clip(_COLOUR_RGB[colour] + 0.16 * (np.array(u[43:46], np.float32) - 0.5), 0, 1)
  img = _background(u[46:60], background, s, t)

  if u[60] < 0.5:  # Silent distractor object under the main one, drifting slowly.
    d = u[61:69]
    d_radius = (0.08 + 0.03 * d[0]) * s
    velocity = 0.15 * s * (np.array(d[1:3]) - 0.5)
    lo, hi = d_radius, s - d_radius
    dx = np.clip(lo + (hi - lo) * d[3] + velocity[0] * t, lo, hi)
    dy = np.clip(lo + (hi - lo) * d[4] + velocity[1] * t, lo, hi)
    d_label = int(d[5] * NUM_CLASSES)
    d_colour = (colour + 1 + int(d[6] * (NUM_COLOURS - 1))) % NUM_COLOURS
    d_alpha = _object_alpha(d_label, dx, dy, np.full(n, d_radius, np.float32),
                            np.pi / 3 * (d[7] - 0.5), pix)
    img += d_alpha * (_COLOUR_RGB[d_colour][:, None, None, None] - img)
  img += alpha * (fg[:, None, None, None] - img)

  noise = rng.random((3, n, s, s), dtype=np.float32)
  amp = 0.14 * u[7]  # Uniform noise, std up to 0.04.
  video = np.clip((img + amp * (noise - 0.5)) * 255 + 0.5, 0, 255).astype(np.uint8)

  factors = dict(label=label, motion=motion, colour=colour, size=big, speed=fast,
                 background=background)
  wording = np.random.default_rng(key + [1]).random(UNIFORMS_PER_CAPTION * num_captions)
  captions = captions_for(wording.tolist(), factors, num_captions)
  return dict(video=video.transpose(1, 2, 3, 0).copy(), audio=audio, captions=captions,
              text=TOKENIZER.encode_batch(captions, max_caption_len), **factors,
              events=np.bincount(frames, minlength=n).clip(0, 1).astype(np.uint8),
              event_times=np.asarray(event_times, np.float32))


# --- how well posed retrieval is -----------------------------------------------------------------


def caption_key(clip) -> tuple:
  """What a caption says about its clip: two clips with equal keys are told apart by no text."""
  return tuple(clip[k] for k in ("label", "colour", "motion", "size", "speed", "background"))


def audio_key(clip) -> tuple:
  """What the sound says that the video also shows: class, colour, size, speed, motion, the
  background (its ambience), and the frames of its events."""
  return (clip["label"], clip["colour"], clip["size"], clip["speed"], clip["motion"],
          clip["background"], tuple(np.nonzero(clip["events"])[0].tolist()))


def retrieval_bound(keys) -> float:
  """Expected R@1 of a perfect model over the clips with these keys: a query ties with every
  clip of its key (its group), and ties are broken at random, so R@1 = mean of 1 / group size."""
  counts = collections.Counter(keys)
  return float(np.mean([1.0 / counts[k] for k in keys]))


# --- the grain source ---------------------------------------------------------------------------


class AVShapesSource:
  """Grain random-access source of avshapes clips; a record is a pure function of its index.

  __getitem__ -> dict(video uint8 (T, S, S, 3), audio float32 (L,), text int32 (K, max_len),
  label int32, motion int32), all fixed-size so records stack into batches. `tokenizer` and
  `class_prompts` serve the multimodal evaluator (zero-shot classification, captions in plots).
  """

  def __init__(self, seed, split, num_records, num_frames=8, image_size=32, sample_rate=8000,
               num_captions=3, max_caption_len=DEFAULT_MAX_CAPTION_LEN, fps=8.0, scene_size=1):
    if split not in SPLIT_IDS:
      raise ValueError(f"split must be one of {tuple(SPLIT_IDS)}, got {split!r}")
    if max_caption_len < MAX_CAPTION_WORDS:
      raise ValueError(f"avshapes captions have up to {MAX_CAPTION_WORDS} words; "
                       f"max_caption_len={max_caption_len} would cut them (set "
                       f"--config.data.max_caption_len={MAX_CAPTION_WORDS} or more)")
    self.name, self.split, self.seed, self.num_records = "avshapes", split, seed, num_records
    self.num_frames, self.image_size, self.sample_rate = num_frames, image_size, sample_rate
    self.num_captions, self.max_caption_len, self.fps = num_captions, max_caption_len, fps
    if not 1 <= scene_size <= NUM_CLASSES or num_records % scene_size:
      raise ValueError(f"scene_size must be in [1, {NUM_CLASSES}] and divide the number of "
                       f"records ({num_records}), got {scene_size}")
    # The input pipeline keeps a scene's clips together in a batch (`pipeline.train_dataset`).
    self.scene_size = self.group_size = scene_size
    self.class_names, self.num_classes = list(CLASS_NAMES), NUM_CLASSES
    self.motion_names, self.num_motions = list(MOTION_NAMES), NUM_MOTIONS
    self.tokenizer, self.vocab_size = TOKENIZER, VOCAB_SIZE
    self.image_shape = (image_size, image_size, 3)
    self.video_shape = (num_frames,) + self.image_shape
    self.audio_length = int(round(num_frames / fps * sample_rate))

  def __len__(self):
    return self.num_records

  def __getitem__(self, index):
    if not 0 <= index < self.num_records:
      raise IndexError(f"avshapes/{self.split} has {self.num_records} records, asked for {index}")
    clip = render_clip(self.seed, self.split, int(index), num_frames=self.num_frames,
                       image_size=self.image_size, sample_rate=self.sample_rate, fps=self.fps,
                       num_captions=self.num_captions, max_caption_len=self.max_caption_len,
                       scene_size=self.scene_size)
    return dict(video=clip["video"], audio=clip["audio"], text=clip["text"],
                label=np.int32(clip["label"]), motion=np.int32(clip["motion"]))

  def get_batch(self, indices):
    records = [self[i] for i in indices]
    return {k: np.stack([r[k] for r in records]) for k in records[0]}

  def class_prompts(self, num_per_class):
    return class_prompts(num_per_class)

  def __repr__(self):
    return (f"AVShapesSource(split={self.split!r}, num_records={self.num_records}, "
            f"seed={self.seed}, num_frames={self.num_frames}, image_size={self.image_size}, "
            f"sample_rate={self.sample_rate}, fps={self.fps}, num_captions={self.num_captions}, "
            f"max_caption_len={self.max_caption_len}, scene_size={self.scene_size})")


def source_from_config(split: str, data_config) -> AVShapesSource:
  """For `sources.get_source`: seed, num_train/num_test, image_size, optional av fields.

  data_config: a mapping (ConfigDict or dict); fields absent from it take the defaults.
  """
  get = data_config.get
  return AVShapesSource(
      data_config["seed"], split, data_config["num_train" if split == "train" else "num_test"],
      num_frames=get("num_frames", 8), image_size=data_config["image_size"],
      sample_rate=get("sample_rate", 8000), num_captions=get("num_captions", 3),
      max_caption_len=get("max_caption_len", DEFAULT_MAX_CAPTION_LEN), fps=get("fps", 8.0),
      scene_size=get("scene_size", 1))
