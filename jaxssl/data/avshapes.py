"""Procedural audio-visual-text clips ("avshapes") for multimodal SSL (MMV, MIL-NCE).

Why: multimodal contrastive learning is only tested if the modalities share a hidden cause that
no single raw input shows plainly. Each clip is one object (a `shapes` class) that moves in one
of six ways; its identity sets the pitch and timbre of the sound it makes, its events
(appearing, hitting a wall or the floor, bouncing, pulsing) are audio onsets at the same
instants, and several captions name its colour, shape and motion in varied words. Backgrounds,
noise, size, speed, a silent distractor object and distractor sounds vary independently, so
raw pixels are near chance at the object class and weak at the motion, while
audio<->video<->text agreement and audio-video sync are learnable. (The sound alone gives the
class away to a spectrum, by design: it is what ties a clip's audio to its video and text.)
Pure numpy, vectorised over frames: ~2 ms per 8x32x32 clip with 1 s of audio and 3 captions on
a loaded 2-core machine (tests/test_avshapes.py prints it). Any record is a pure function of
(seed, split, index).

Generative factors, drawn from `default_rng([seed, split, index, _STREAM])` (clip) and
`default_rng([seed, split, index, _STREAM, 1])` (caption wording):

  label      object class, uniform over `CLASS_NAMES` (the 10 shapes of `jaxssl.data.shapes`).
  motion     uniform over `MOTION_NAMES`: right, left, up, down (constant speed; stops with a
             thud if it reaches the wall), bounce (parabolic hops on the floor every 2-4
             frames), pulse (stays put; grows by 30-50% every 2-4 frames and shrinks back).
             Events (appearing, contacts, beats, wall hits) fall exactly on frame times.
  colour     uniform over the 8 `COLOUR_NAMES`, +-0.08 per-channel jitter.
  size       circumscribed diameter 30-50% of the frame; rotation +-30 degrees, constant.
  speed      35-85% of the frame per second; start position, hop height/period, beat period.
  appear     with p=0.35 the object appears at frame 1 or 2 (an event) instead of frame 0.
  sound      harmonic tone: class fundamental (150-790 Hz, 3.2 semitones apart) with +-1.2
             semitone jitter, class harmonic profile (4 partials, +-20% jitter), random phases;
             a low hum while the object moves, a percussive attack (decay 50-100 ms) plus a
             noise click at every event; loudness grows with size.
  background two colours mixed by a `shapes` texture at 10-30% contrast, pushed away from the
             object colour; drifts by up to S/8 pixels per axis over the clip.
  distractor with p=0.5 a smaller silent object (any class, another colour name), drifting
             slowly, drawn under the main one; never mentioned in captions.
  audio nuisances: white/low-passed noise, with p=0.75 an unrelated smooth tone burst
             (120-2500 Hz, 0.1-0.35 s), overall gain.
  pixel noise uniform, std up to 0.04.
  captions   `num_captions` distinct phrasings (templates x determiners x synonyms).
"""
import re

import numpy as np

from jaxssl.data import shapes, text

CLASS_NAMES = shapes.CLASS_NAMES
NUM_CLASSES = shapes.NUM_CLASSES
SPLIT_IDS = shapes.SPLIT_IDS
MOTION_NAMES = ("right", "left", "up", "down", "bounce", "pulse")
NUM_MOTIONS = len(MOTION_NAMES)
COLOUR_NAMES = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
NUM_COLOURS = len(COLOUR_NAMES)
_COLOUR_RGB = np.array([[.9, .1, .1], [1., .55, .05], [.95, .9, .1], [.1, .75, .2],
                        [.15, .3, .95], [.6, .15, .8], [.95, .95, .95], [.06, .06, .06]],
                       np.float32)
_STREAM = 0xA75  # Keeps this dataset's rng streams apart from `shapes`' for equal keys.
_NUM_UNIFORMS = 72

# Sound of each class: fundamental (Hz), and the amplitudes of partials 1-4 (timbre).
_BASE_F0 = (150.0 * 2.0 ** (3.2 * np.arange(NUM_CLASSES) / 12)).tolist()
_PARTIALS = np.array([[1., 0., 0., 0.], [1., 0., .5, 0.], [1., .6, 0., 0.], [.5, .6, .6, .5],
                      [1., 0., 0., .6], [1., .3, .3, 0.], [1., .5, .25, .12], [.6, 1., 0., 0.],
                      [1., .2, 0., .4], [.8, 0., .4, .7]], np.float32)

# --- caption grammar ----------------------------------------------------------------------------
# Synonyms of different classes (and of different colours) share no word, so a caption names
# its class and colour unambiguously even to a bag-of-words text encoder.
SHAPE_WORDS = (("disc", "circle", "round dot"), ("square", "box", "square block"),
               ("triangle", "wedge", "three-sided triangle"),
               ("star", "five-pointed star", "starburst"), ("cross", "plus sign", "plus"),
               ("ring", "hoop", "doughnut"), ("semicircle", "dome", "half-circle"),
               ("crescent", "sickle", "crescent moon"), ("heart", "love heart", "valentine heart"),
               ("arrow", "pointer", "dart"))
COLOUR_WORDS = (("red", "crimson", "scarlet"), ("orange", "amber", "tangerine"),
                ("yellow", "golden", "lemon"), ("green", "emerald", "jade"),
                ("blue", "azure", "cobalt"), ("purple", "violet", "plum"),
                ("white", "snowy", "ivory"), ("black", "ebony", "inky"))


def _directional(way):
  return ((f"moves to the {way}", f"moving to the {way}"), (f"slides {way}wards",
          f"sliding {way}wards"), (f"drifts {way}", f"drifting {way}"),
          (f"heads to the {way}", f"heading to the {way}"), (f"glides {way}", f"gliding {way}"))


MOTION_WORDS = (  # (present tense, gerund) phrasings per motion class.
    _directional("right"), _directional("left"),
    (("moves up", "moving up"), ("rises", "rising"), ("floats upwards", "floating upwards"),
     ("climbs", "climbing"), ("drifts up", "drifting up")),
    (("moves down", "moving down"), ("sinks", "sinking"), ("descends", "descending"),
     ("slides downwards", "sliding downwards"), ("drifts down", "drifting down")),
    (("bounces", "bouncing"), ("bounces on the floor", "bouncing on the floor"),
     ("hops up and down", "hopping up and down"), ("bounces up and down", "bouncing up and down"),
     ("keeps bouncing", "bouncing repeatedly")),
    (("pulses", "pulsing"), ("grows and shrinks", "growing and shrinking"),
     ("throbs in place", "throbbing in place"), ("pulsates", "pulsating"),
     ("swells and shrinks", "swelling and shrinking")))
# {d} determiner, {c} colour, {s} shape, {m} motion (present), {g} motion (gerund).
_TEMPLATES = ("{d} {c} {s} {m}", "{d} {c} {s} {g}", "{d} {c} {s} is {g}",
              "there is {d} {c} {s} {g}", "{d} {s} in {c} {m}", "we see {d} {c} {s} that {m}",
              "in this clip {d} {c} {s} {m}", "here {d} {c} coloured {s} {m}")
_DETERMINERS = ("a", "the", "one")
_A_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou])")


def _grammar():
  """(every word a caption can contain, the most words one can have)."""
  def n(phrases):
    return max(len(text.split_words(p)) for p in phrases)
  words = {"an", *_DETERMINERS}
  for phrase in [p for g in SHAPE_WORDS + COLOUR_WORDS for p in g] + [
      p for g in MOTION_WORDS for pair in g for p in pair]:
    words.update(text.split_words(phrase))
  most = 0
  for t in _TEMPLATES:
    literal = text.split_words(re.sub(r"\{\w\}", " ", t))
    words.update(literal)
    slot = {"d": 1, "c": n([p for g in COLOUR_WORDS for p in g]),
            "s": n([p for g in SHAPE_WORDS for p in g]),
            "m": n([pair[0] for g in MOTION_WORDS for pair in g]),
            "g": n([pair[1] for g in MOTION_WORDS for pair in g])}
    most = max(most, len(literal) + sum(slot[k] for k in re.findall(r"\{(\w)\}", t)))
  return sorted(words), most


_WORDS, MAX_CAPTION_WORDS = _grammar()
TOKENIZER = text.WordTokenizer(_WORDS)
VOCAB_SIZE = TOKENIZER.vocab_size
DEFAULT_MAX_CAPTION_LEN = 16
assert MAX_CAPTION_WORDS <= DEFAULT_MAX_CAPTION_LEN


def encode(caption: str, max_len: int = DEFAULT_MAX_CAPTION_LEN) -> np.ndarray:
  return TOKENIZER.encode(caption, max_len)


def decode(ids) -> str:
  return TOKENIZER.decode(ids)


def captions_for(u, label, motion, colour, num_captions):
  """`num_captions` distinct captions; u: 5 uniforms per caption (template, det, c, s, m)."""
  out = []
  for j in range(num_captions):
    t, d, c, s, m = u[5 * j:5 * j + 5]
    present, gerund = MOTION_WORDS[motion][int(m * len(MOTION_WORDS[motion]))]
    fill = dict(d=_DETERMINERS[int(d * len(_DETERMINERS))], m=present, g=gerund,
                c=COLOUR_WORDS[colour][int(c * len(COLOUR_WORDS[colour]))],
                s=SHAPE_WORDS[label][int(s * len(SHAPE_WORDS[label]))])
    first = int(t * len(_TEMPLATES))
    for k in range(len(_TEMPLATES)):  # Next template on a repeat: K <= 8 are always distinct.
      caption = _A_BEFORE_VOWEL.sub("an ", _TEMPLATES[(first + k) % len(_TEMPLATES)].format(**fill))
      if caption not in out:
        break
    out.append(caption)
  return out


# --- rendering ----------------------------------------------------------------------------------


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


def _trajectory(motion, g, radius, s, t, app, fps):
  """Centre (T,), (T,), radius scale (T,), event frames and the end of the moving hum (s).

  g: iterator of uniforms; t: frame times (s); app: the frame the object appears in. Events
  (contacts, beats, wall hits) happen exactly at frame times, so the frame that shows an event
  is the one its audio onset starts, and bounces are seen touching the floor.
  """
  n = len(t)
  if motion >= 4:  # Bounce / pulse: an event every `period` frames from frame `first` on.
    period = 2 + int(3 * g())
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
    return cx, cy, 1 + amp * np.exp((last - t) / 0.12), events, n / fps
  # Linear: constant speed from near one wall; stops (a thud) if it reaches the other, with the
  # speed nudged so that this happens at a frame.
  lo, hi = 0.9 * radius, s - 0.9 * radius
  speed = (0.35 + 0.5 * g()) * s  # Pixels per second.
  start, across = lo + 0.3 * (hi - lo) * g(), lo + (hi - lo) * g()
  hit = app + max(int(round((hi - start) / speed * fps)), 1)
  if hit < n:
    speed = (hi - start) * fps / (hit - app)
  along = np.minimum(start + speed * np.maximum(t - app / fps, 0.0), hi)
  along = along if motion in (0, 3) else s - along  # Right and down go +x, +y.
  other = np.full(n, across)
  cx, cy = (along, other) if motion < 2 else (other, along)
  return cx, cy, np.ones(n), [hit] if hit < n else [], min(hit, n) / fps


def _synth(g, rng, label, size_u, events, t_app, stop, dur, length, rate):
  """Mono float32 (length,): the object's tone with event attacks, plus distractor sounds."""
  t = np.arange(length, dtype=np.float32) / rate
  f0 = _BASE_F0[label] * 2.0 ** (1.2 * (2 * g() - 1) / 12)
  amps = _PARTIALS[label] * (0.8 + 0.4 * np.array([g() for _ in range(4)], np.float32))
  phases = 2 * np.pi * np.array([g() for _ in range(4)], np.float32)[:, None]
  freqs = (2 * np.pi * f0 * np.arange(1, 5, dtype=np.float32))[:, None]
  tone = amps @ np.sin(freqs * t + phases) / amps.sum()
  ev = np.sort(np.asarray(events, np.float32))
  since = t - np.concatenate([[-1e3], ev]).astype(np.float32)[np.searchsorted(ev, t, "right")]
  hum = (0.15 + 0.15 * g()) * ((t >= t_app) & (t < stop))
  gain = (0.35 + 0.35 * size_u) * (0.6 + 0.4 * g())
  # Unit-variance uniform white noise: a third of the cost of normal draws, and just as white.
  white = (rng.random(length + 16, dtype=np.float32) - 0.5) * 3.46
  click = (0.2 + 0.3 * g()) * white[16:] * np.exp(since / -0.006)
  audio = gain * (tone * (hum + np.exp(since / -(0.05 + 0.05 * g()))) + click)
  # Background noise: white mixed with a 16-tap moving average (low-passed) of it.
  total = np.cumsum(white)
  smooth = (total[16:] - total[:-16]) / 4.0
  mix = g()
  audio += (0.005 + 0.04 * g()) * ((1 - mix) * white[:length] + mix * smooth[:length])
  if g() < 0.75:  # An unrelated tone burst with a smooth (Hann) envelope.
    freq, span, start, amp = 120 * (2500 / 120) ** g(), 0.1 + 0.25 * g(), g(), 0.05 + 0.25 * g()
    i0 = int(start * max(dur - span, 0.0) * rate)
    num = min(int(span * rate), length - i0)
    tb = np.arange(num, dtype=np.float32)
    audio[i0:i0 + num] += amp * np.sin(np.pi * tb / num) ** 2 * np.sin(
        2 * np.pi * freq / rate * tb + 6.3 * g())
  else:
    g(), g(), g(), g(), g()
  return np.clip(audio * (0.6 + 0.4 * g()), -1.0, 1.0).astype(np.float32)


def render_clip(seed: int, split: str, index: int, *, num_frames: int = 8, image_size: int = 32,
                sample_rate: int = 8000, fps: float = 8.0, num_captions: int = 3,
                max_caption_len: int = DEFAULT_MAX_CAPTION_LEN) -> dict:
  """One clip; see the module docstring.

  Returns video uint8 (T, S, S, 3), audio float32 (round(T / fps * sample_rate),), captions
  (list of num_captions str), text int32 (num_captions, max_caption_len), and, for evaluation
  only: label, motion, colour (int), events uint8 (T,) (1 where an event falls in the frame) and
  event_times float32 (n,) in seconds. Frame i shows time i / fps; sample j is time j / rate.
  """
  n, s = num_frames, image_size
  if s < shapes._MIN_IMAGE_SIZE:
    raise ValueError(f"avshapes needs image_size >= {shapes._MIN_IMAGE_SIZE}, got {s}")
  if not 1 <= num_captions <= len(_TEMPLATES):
    raise ValueError(f"num_captions must be in [1, {len(_TEMPLATES)}], got {num_captions}")
  key = [seed, SPLIT_IDS[split], index, _STREAM]
  rng = np.random.default_rng(key)
  u = rng.random(_NUM_UNIFORMS).tolist()
  # Fixed slices per concern, so each factor's draw does not depend on the others' branches.
  label, motion = int(u[0] * NUM_CLASSES), int(u[1] * NUM_MOTIONS)
  colour = int(u[2] * NUM_COLOURS)
  dur = n / fps
  length = int(round(dur * sample_rate))
  t = np.arange(n, dtype=np.float32) / fps
  app = 0 if u[3] >= 0.35 or n < 4 else 1 + int(u[4] * 2)  # Frame the object appears in.
  t_app = app / fps
  radius = (0.15 + 0.1 * u[5]) * s
  cx, cy, grow, events, stop = _trajectory(motion, iter(u[8:16]).__next__, radius, s, t, app,
                                           fps)
  frames = np.array(([app] if app else []) + events, np.intp)
  events = (frames / fps).tolist()
  audio = _synth(iter(u[16:40]).__next__, rng, label, u[5], events, t_app, stop, dur, length,
                 sample_rate)

  pix = np.arange(s, dtype=np.float32) + 0.5
  alpha = _object_alpha(label, cx, cy, radius * grow, np.pi / 3 * (u[6] - 0.5), pix)
  alpha *= (t >= t_app - 1e-6)[:, None, None]
  fg = np.clip(_COLOUR_RGB[colour] + 0.16 * (np.array(u[40:43], np.float32) - 0.5), 0, 1)

  # Background: a texture drifting by whole pixels, pushed away from the object's colour.
  b = u[43:56]
  bg = np.array(b[:6], np.float32).reshape(2, 3)
  if np.abs(fg - bg.mean(0)).sum() < 0.75:
    bg = np.mod(bg + 0.5, 1.0)
  pad = max(s // 8, 1)
  tex = shapes._texture(int(b[6] * 4), (np.arange(s + 2 * pad, dtype=np.float32) + 0.5) / s,
                        np.array(b[7:11], np.float32))
  frac = t / max(t[-1], 1e-6)
  oy = (pad + np.rint(frac * pad * (2 * b[11] - 1))).astype(np.intp)[:, None, None]
  ox = (pad + np.rint(frac * pad * (2 * b[12] - 1))).astype(np.intp)[:, None, None]
  ar = np.arange(s)
  tex = tex[oy + ar[:, None], ox + ar].astype(np.float32)  # (T, S, S)
  contrast = 0.1 + 0.2 * u[56]
  img = tex * (contrast * (bg[1] - bg[0]))[:, None, None, None] + bg[0][:, None, None, None]

  if u[57] < 0.5:  # Silent distractor object under the main one, drifting slowly.
    d = u[58:66]
    d_radius = (0.09 + 0.05 * d[0]) * s
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

  crng = np.random.default_rng(key + [1])
  captions = captions_for(crng.random(5 * num_captions).tolist(), label, motion, colour,
                          num_captions)
  return dict(video=video.transpose(1, 2, 3, 0).copy(), audio=audio, captions=captions,
              text=TOKENIZER.encode_batch(captions, max_caption_len), label=label,
              motion=motion, colour=colour,
              events=np.bincount(frames, minlength=n).clip(0, 1).astype(np.uint8),
              event_times=np.asarray(events, np.float32))


class AVShapesSource:
  """Grain random-access source of avshapes clips; a record is a pure function of its index.

  __getitem__ -> dict(video uint8 (T, S, S, 3), audio float32 (L,), text int32 (K, max_len),
  label int32, motion int32), all fixed-size so records stack into batches.
  """

  def __init__(self, seed, split, num_records, num_frames=8, image_size=32, sample_rate=8000,
               num_captions=3, max_caption_len=DEFAULT_MAX_CAPTION_LEN, fps=8.0):
    if split not in SPLIT_IDS:
      raise ValueError(f"split must be one of {tuple(SPLIT_IDS)}, got {split!r}")
    self.name, self.split, self.seed, self.num_records = "avshapes", split, seed, num_records
    self.num_frames, self.image_size, self.sample_rate = num_frames, image_size, sample_rate
    self.num_captions, self.max_caption_len, self.fps = num_captions, max_caption_len, fps
    self.class_names, self.num_classes = list(CLASS_NAMES), NUM_CLASSES
    self.motion_names, self.num_motions = list(MOTION_NAMES), NUM_MOTIONS
    self.vocab_size = VOCAB_SIZE
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
                       num_captions=self.num_captions, max_caption_len=self.max_caption_len)
    return dict(video=clip["video"], audio=clip["audio"], text=clip["text"],
                label=np.int32(clip["label"]), motion=np.int32(clip["motion"]))

  def get_batch(self, indices):
    records = [self[i] for i in indices]
    return {k: np.stack([r[k] for r in records]) for k in records[0]}

  def __repr__(self):
    return (f"AVShapesSource(split={self.split!r}, num_records={self.num_records}, "
            f"seed={self.seed}, num_frames={self.num_frames}, image_size={self.image_size}, "
            f"sample_rate={self.sample_rate}, fps={self.fps}, num_captions={self.num_captions}, "
            f"max_caption_len={self.max_caption_len})")


def source_from_config(split: str, data_config) -> AVShapesSource:
  """For `sources.get_source`: seed, num_train/num_test, image_size, optional av fields.

  data_config: a mapping (ConfigDict or dict); fields absent from it take the defaults.
  """
  get = data_config.get
  return AVShapesSource(
      data_config["seed"], split, data_config["num_train" if split == "train" else "num_test"],
      num_frames=get("num_frames", 8), image_size=data_config["image_size"],
      sample_rate=get("sample_rate", 8000), num_captions=get("num_captions", 3),
      max_caption_len=get("max_caption_len", DEFAULT_MAX_CAPTION_LEN), fps=get("fps", 8.0))
