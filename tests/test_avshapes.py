"""Tests of jaxssl.data.avshapes (procedural audio-visual-text clips) and its tokenizer.

Beyond shapes and determinism, these check that the modalities really co-vary (the sound
identifies the class, colour, size, speed, motion and background, audio onsets sit on the event frames, captions name the
ground truth), that retrieval among 1,000 clips is well posed (perfect-model R@1 bounds), and
that raw pixels stay a weak baseline. Measured numbers (ms per clip, bounds, probe accuracies)
are printed, not asserted tightly: run with `-s` to see them.
"""
import itertools
import time

import numpy as np
import pytest

from jaxssl.data import avshapes, avshapes_audio, text

_NUM = 1000  # Clips shared by the statistical tests (~2 s to render).
_FACTORS = ("label", "motion", "colour", "size", "speed", "background")


@pytest.fixture(scope="module")
def clips():
  return [avshapes.render_clip(0, "train", i) for i in range(_NUM)]


def _same(a, b):
  return all(np.array_equal(a[k], b[k]) for k in ("video", "audio", "text", "events")) and all(
      a[k] == b[k] for k in ("captions",) + _FACTORS)


def test_render_clip_is_a_pure_function_of_seed_split_index():
  clip = avshapes.render_clip(3, "train", 17)
  assert _same(clip, avshapes.render_clip(3, "train", 17))
  for other in (avshapes.render_clip(4, "train", 17), avshapes.render_clip(3, "test", 17),
                avshapes.render_clip(3, "train", 18)):
    assert clip["video"].tobytes() != other["video"].tobytes()
    assert clip["audio"].tobytes() != other["audio"].tobytes()
  # Caption count and length change only the text, never the clip itself.
  more = avshapes.render_clip(3, "train", 17, num_captions=5, max_caption_len=24)
  assert more["captions"][:1] == clip["captions"][:1] and more["text"].shape == (5, 24)
  assert _same({**more, "text": clip["text"], "captions": clip["captions"]}, clip)


def test_shapes_and_dtypes():
  clip = avshapes.render_clip(0, "train", 0)
  assert clip["video"].shape == (8, 32, 32, 3) and clip["video"].dtype == np.uint8
  assert clip["audio"].shape == (8000,) and clip["audio"].dtype == np.float32
  assert np.abs(clip["audio"]).max() <= 1.0
  assert clip["text"].shape == (3, avshapes.DEFAULT_MAX_CAPTION_LEN)
  assert clip["text"].dtype == np.int32 and len(clip["captions"]) == 3
  assert clip["events"].shape == (8,) and clip["events"].dtype == np.uint8
  big = avshapes.render_clip(0, "train", 0, num_frames=16, image_size=48, sample_rate=16000,
                             fps=16, num_captions=2, max_caption_len=24)
  assert big["video"].shape == (16, 48, 48, 3) and big["audio"].shape == (16000,)
  assert big["text"].shape == (2, 24)
  with pytest.raises(ValueError):
    avshapes.render_clip(0, "train", 0, image_size=4)


def test_source_records_batches_and_repr():
  source = avshapes.AVShapesSource(0, "train", 50, num_captions=2)
  assert len(source) == 50 and source.num_classes == 10 and source.num_motions == 6
  assert source.video_shape == (8, 32, 32, 3) and source.audio_length == 8000
  record = source[7]
  assert set(record) == {"video", "audio", "text", "label", "motion"}
  assert record["text"].shape == (2, avshapes.DEFAULT_MAX_CAPTION_LEN)
  assert record["label"].dtype == np.int32 and record["motion"].dtype == np.int32
  clip = avshapes.render_clip(0, "train", 7, num_captions=2)
  assert record["video"].tobytes() == clip["video"].tobytes() and record["label"] == clip["label"]
  batch = source.get_batch(np.array([3, 7]))
  assert batch["video"].shape == (2, 8, 32, 32, 3)
  assert batch["text"].shape == (2, 2, avshapes.DEFAULT_MAX_CAPTION_LEN)
  assert batch["audio"].tobytes()[-32000:] == record["audio"].tobytes()
  with pytest.raises(IndexError):
    source[50]
  assert repr(source) == repr(avshapes.AVShapesSource(0, "train", 50, num_captions=2))
  assert "0x" not in repr(source)
  assert repr(source) != repr(avshapes.AVShapesSource(1, "train", 50, num_captions=2))
  config = dict(seed=0, num_train=50, num_test=10, image_size=32, num_captions=2)
  assert repr(avshapes.source_from_config("train", config)) == repr(source)
  assert len(avshapes.source_from_config("test", config)) == 10
  with pytest.raises(ValueError, match="max_caption_len=10 would cut"):
    avshapes.source_from_config("train", dict(config, max_caption_len=10))
  # Zero-shot prompts: every prompt names its class, and only its class.
  prompts = source.class_prompts(5)
  assert len(prompts) == 10 and all(len(p) == 5 for p in prompts)
  for label, group in enumerate(prompts):
    for prompt in group:
      assert _phrases_in(prompt, avshapes.SHAPE_WORDS) == [label], prompt
  assert source.tokenizer is avshapes.TOKENIZER and source.vocab_size == avshapes.VOCAB_SIZE


def test_factors_cover_all_values(clips):
  first = clips[:200]
  for key, num in (("label", 10), ("motion", 6), ("colour", 8), ("size", 2), ("speed", 2),
                   ("background", 6)):
    counts = np.bincount([c[key] for c in first], minlength=num)
    assert len(counts) == num and counts.min() >= 8, (key, counts)
  # Nuisances really vary: mean brightness, and the loudness of the audio.
  assert np.std([c["video"].mean() for c in first]) > 10
  assert np.std([np.abs(c["audio"]).mean() for c in first]) > 0.01


def _spectrum_features(audio, rate=8000):
  """Log energy in 48 log-spaced bands, 100-3800 Hz, normalised per clip (loudness-free)."""
  power = np.abs(np.fft.rfft(audio, axis=-1)) ** 2
  freqs = np.fft.rfftfreq(audio.shape[-1], 1 / rate)
  edges = np.searchsorted(freqs, np.geomspace(100, 3800, 49))
  bands = np.log(np.add.reduceat(power, edges, axis=-1)[:, :-1] + 1e-6)
  return bands - bands.mean(-1, keepdims=True)


def _fundamental(audio, rate=8000):
  """(power spectrum, its frequencies, the fundamental: the strongest peak in 130-900 Hz)."""
  power = np.abs(np.fft.rfft(audio * np.hanning(audio.shape[-1]), axis=-1)) ** 2
  freqs = np.fft.rfftfreq(audio.shape[-1], 1 / rate)
  lo, hi = np.searchsorted(freqs, [130, 900])
  return power, freqs, freqs[lo + np.argmax(power[:, lo:hi], -1)]


def _harmonic_ratios(audio, rate=8000):
  """Log power of partials 2-4 relative to the fundamental."""
  power, freqs, f0 = _fundamental(audio, rate)
  rows = np.arange(len(audio))[:, None]

  def at(f):  # Peak power within 3 bins of f.
    idx = np.searchsorted(freqs, f)[:, None] + np.arange(-3, 4)
    return power[rows, np.clip(idx, 0, len(freqs) - 1)].max(-1)

  return np.stack([np.log(at(k * f0) / at(f0) + 1e-9) for k in (2, 3, 4)], 1)


def _resonance_colour(audio, rate=8000):
  """The colour whose resonance (avshapes_audio.RESONANCE_HZ, +-1 semitone) peaks highest."""
  power = np.abs(np.fft.rfft(audio * np.hanning(audio.shape[-1]), axis=-1)) ** 2
  freqs = np.fft.rfftfreq(audio.shape[-1], 1 / rate)
  peaks = [power[:, np.abs(np.log2(np.maximum(freqs, 1.0) / hz)) < 1 / 12].max(-1)
           for hz in avshapes_audio.RESONANCE_HZ]
  return np.argmax(np.stack(peaks, 1), 1)


def _envelope(audio, rate=8000, hop=0.01):
  """Log RMS envelope in 10 ms hops, minus its mean (loudness-free)."""
  h = int(rate * hop)
  env = np.log(np.sqrt((audio.reshape(len(audio), -1, h) ** 2).mean(-1)) + 1e-4)
  return env - env.mean(-1, keepdims=True)


def test_sound_identifies_class_colour_size_and_speed(clips):
  """What a listener can read off the audio: class (pitch), colour (harmonic profile; resonance),
  size (ring time), speed (rattle rate). Simple fixed features, 800 clips fit / 200 held out."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.neighbors import KNeighborsClassifier
  audio = np.stack([c["audio"] for c in clips])
  y = {k: np.array([c[k] for c in clips]) for k in _FACTORS}
  n_fit = 800
  # The class whose base pitch is nearest (in semitones) to the fundamental.
  semitones = 12 * np.log2(_fundamental(audio[n_fit:])[2][:, None] / avshapes_audio.BASE_F0)
  pred = np.argmin(np.abs(semitones), -1)
  scores = {"label": float(np.mean(pred == y["label"][n_fit:]))}
  harmonics, envelope = _harmonic_ratios(audio), _envelope(audio)
  scores["colour"] = KNeighborsClassifier(10).fit(harmonics[:n_fit], y["colour"][:n_fit]).score(
      harmonics[n_fit:], y["colour"][n_fit:])
  scores["resonance"] = float(np.mean(_resonance_colour(audio[n_fit:]) == y["colour"][n_fit:]))
  for key in ("size", "speed"):
    probe = LogisticRegression(max_iter=2000).fit(envelope[:n_fit], y[key][:n_fit])
    scores[key] = probe.score(envelope[n_fit:], y[key][n_fit:])
  print("\naudio: class (nearest base pitch to the fundamental) {label:.3f}, colour (10-NN on harmonic "
        "ratios) {colour:.3f}, colour (the loudest resonance) {resonance:.3f}, size / speed "
        "(logistic on the envelope) {size:.3f} / {speed:.3f}; chance 0.1 / 0.125 / 0.125 / 0.5 / "
        "0.5".format(**scores))
  assert scores["label"] > 0.8 and scores["colour"] > 0.8 and scores["resonance"] > 0.7
  assert scores["size"] > 0.7 and scores["speed"] > 0.65


def _spectrogram_features(audio, rate=8000, chunks=8, lo=600, hi=3800, bands=24):
  """Log energy in `bands` log-spaced bands (lo-hi Hz) per eighth of the clip, minus each
  chunk's mean (loudness-free): where the whistle is, and which way it glides."""
  parts = audio.reshape(len(audio), chunks, -1)
  power = np.abs(np.fft.rfft(parts * np.hanning(parts.shape[-1]), axis=-1)) ** 2
  edges = np.searchsorted(np.fft.rfftfreq(parts.shape[-1], 1 / rate),
                          np.geomspace(lo, hi, bands + 1))
  logs = np.log(np.add.reduceat(power, edges, axis=-1)[..., :-1] + 1e-6)
  return (logs - logs.mean(-1, keepdims=True)).reshape(len(audio), -1)


def test_sound_identifies_motion_and_background(clips):
  """The rest of what the sound shares with the video: the motion (a straight-line mover's
  whistle glides up or down in a register per axis; bounce and pulse have none) and the
  background (its ambience band). Logistic regression on simple spectra, 800 fit / 200 held
  out."""
  from sklearn.linear_model import LogisticRegression
  audio = np.stack([c["audio"] for c in clips])
  scores = {}
  for key, feats in (("motion", _spectrogram_features(audio)),
                     ("background", _spectrum_features(audio))):
    y = np.array([c[key] for c in clips])
    probe = LogisticRegression(max_iter=3000).fit(feats[:800], y[:800])
    scores[key] = probe.score(feats[800:], y[800:])
  print("\naudio: motion (logistic on a coarse spectrogram) {motion:.3f}, background (logistic "
        "on the spectrum) {background:.3f}; chance 0.167 / 0.167".format(**scores))
  assert scores["motion"] > 0.6 and scores["background"] > 0.6


def test_retrieval_among_1000_clips_is_well_posed():
  """Perfect-model R@1 over 1,000 held-out clips: text->video (the factors caption 0 names)
  and audio->video (the factors the sound shares with the video, event frames included)."""
  clips = [avshapes.render_clip(0, "test", i) for i in range(1000)]
  text_bound = avshapes.retrieval_bound([avshapes.caption_key(c) for c in clips])
  audio_bound = avshapes.retrieval_bound([avshapes.audio_key(c) for c in clips])
  untimed = avshapes.retrieval_bound([avshapes.audio_key(c)[:-1] for c in clips])
  print(f"\nperfect R@1 over 1000 clips: text->video {text_bound:.3f}, audio->video "
        f"{audio_bound:.3f} ({untimed:.3f} without event timing)")
  assert text_bound >= 0.9 and audio_bound >= 0.9 and untimed >= 0.9
  assert avshapes.retrieval_bound([(0,), (0,), (1,)]) == pytest.approx((0.5 + 0.5 + 1) / 3)


def test_scenes_differ_only_in_the_class_and_make_it_necessary():
  """Clips of a scene share every factor and event but the object's class (distinct within the
  scene); among 1,000 test clips in scenes of 4, the other factors no longer identify a clip."""
  scene = [avshapes.render_clip(0, "test", i, scene_size=4) for i in range(4, 8)]
  assert len({c["label"] for c in scene}) == 4
  for c in scene[1:]:
    assert all(c[k] == scene[0][k] for k in _FACTORS[1:])
    np.testing.assert_array_equal(c["events"], scene[0]["events"])
    assert c["video"].tobytes() != scene[0]["video"].tobytes()
  clips = [avshapes.render_clip(0, "test", i, scene_size=4) for i in range(1000)]
  keys = [avshapes.caption_key(c) for c in clips]
  with_class, without = (avshapes.retrieval_bound(k) for k in (keys, [k[1:] for k in keys]))
  print(f"\nscenes of 4, perfect text->video R@1 over 1000 clips: {with_class:.3f}, "
        f"{without:.3f} without the class")
  assert with_class >= 0.9 and without <= 0.3
  assert avshapes.AVShapesSource(0, "test", 8, scene_size=4).group_size == 4  # Kept whole.
  with pytest.raises(ValueError, match="scene_size"):
    avshapes.AVShapesSource(0, "train", 50, scene_size=4)


def _onsets(audio, rate=8000, hop=0.005):
  """Times (s) where the 5 ms RMS envelope rises by > 8 dB within 15 ms (local maxima)."""
  h = int(rate * hop)
  env = np.sqrt((audio[:len(audio) // h * h].reshape(-1, h) ** 2).mean(1)) + 1e-4
  rise = np.log(env[3:] / env[:-3])
  peak = (rise[1:-1] > np.log(2.5)) & (rise[1:-1] >= rise[:-2]) & (rise[1:-1] > rise[2:])
  return (np.nonzero(peak)[0] + 1 + 3) * hop


def test_audio_onsets_sit_on_event_frames(clips):
  """Each event has an audio onset within one frame; random times match far worse."""
  rng = np.random.default_rng(0)
  errors, control = [], []
  for clip in clips[:400]:
    onsets = _onsets(clip["audio"])
    times = clip["event_times"]
    assert np.array_equal(np.nonzero(clip["events"])[0], np.unique(np.floor(times * 8)))
    if not len(onsets):
      errors += [np.inf] * len(times)
      continue
    nearest = lambda ts: np.abs(ts[:, None] - onsets[None]).min(1)  # noqa: E731
    errors += nearest(times).tolist()
    control += nearest(rng.uniform(0.125, 1.0, len(times))).tolist()
  errors, control = np.array(errors), np.array(control)
  frame = 1 / 8
  recall, chance = np.mean(errors <= frame), np.mean(control <= frame)
  print(f"\n{len(errors)} events: onset within one frame {recall:.3f} (random times {chance:.3f}),"
        f" median error {1e3 * np.median(errors):.1f} ms (random {1e3 * np.median(control):.1f})")
  assert len(errors) > 300
  assert recall > 0.9 and np.median(errors) < 0.01 < np.median(control)


def _phrases_in(caption, groups):
  """Indices of the groups with a phrase in the caption, as whole words."""
  padded = f" {caption} "
  return [k for k, group in enumerate(groups) if any(f" {p} " in padded for p in group)]


def test_captions_name_the_ground_truth_and_round_trip(clips):
  vocab = set(avshapes.TOKENIZER.words)
  assert avshapes.VOCAB_SIZE == len(vocab) and avshapes.TOKENIZER.words[:2] == ("<pad>", "<unk>")
  motion_phrases = [[p for pair in group for p in pair] for group in avshapes.MOTION_WORDS]
  wordings = set()
  for clip in clips[:300]:
    assert len(set(clip["captions"])) == len(clip["captions"])  # K different phrasings.
    for caption, ids in zip(clip["captions"], clip["text"]):
      assert _phrases_in(caption, avshapes.SHAPE_WORDS) == [clip["label"]], caption
      assert _phrases_in(caption, avshapes.COLOUR_WORDS) == [clip["colour"]], caption
      assert _phrases_in(caption, motion_phrases) == [clip["motion"]], caption
      for key, groups in (("size", avshapes.SIZE_WORDS), ("speed", avshapes.SPEED_WORDS),
                          ("background", avshapes.BACKGROUND_WORDS)):
        assert _phrases_in(caption, groups) == [clip[key]], (key, caption)
      assert avshapes.decode(ids) == caption and text.UNK_ID not in ids
      assert len(caption.split()) <= avshapes.MAX_CAPTION_WORDS
      wordings.add(caption)
  assert len(wordings) > 800  # Varied: nearly every caption is new.
  # Each motion class has its own direction words: only these few are shared between classes.
  shared = {"moves", "moving", "drifts", "drifting", "slides", "sliding", "glides", "gliding",
            "heads", "heading", "to", "the"}
  words = [{w for p in group for w in text.split_words(p)} - shared for group in motion_phrases]
  for i, j in itertools.combinations(range(len(words)), 2):
    assert not words[i] & words[j], (avshapes.MOTION_NAMES[i], avshapes.MOTION_NAMES[j])
  # The tokenizer: padding, truncation, unknown words, punctuation.
  ids = avshapes.encode("A red STAR, moves to the left!", 10)
  assert ids.dtype == np.int32 and ids.shape == (10,) and (ids[7:] == text.PAD_ID).all()
  assert avshapes.decode(ids) == "a red star moves to the left"
  assert avshapes.encode("a zebra", 3).tolist() == [avshapes.TOKENIZER.ids["a"], text.UNK_ID, 0]
  assert avshapes.decode(avshapes.encode("the red star moves to the left", 3)) == "the red star"


def test_generation_speed():
  """Prints ms per clip at the default 8x32x32, 1 s of 8 kHz audio, 3 captions (not asserted)."""
  for i in range(20):
    avshapes.render_clip(1, "train", i)
  start, num = time.perf_counter(), 300
  for i in range(num):
    avshapes.render_clip(1, "train", i)
  print(f"\navshapes: {1e3 * (time.perf_counter() - start) / num:.2f} ms per clip "
        "(8x32x32 video, 8000 audio samples, 3 captions)")


def test_raw_pixels_are_a_weak_baseline(clips):
  """Logistic regression and 20-NN on raw flattened video (800 fit / 200 held out)."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.neighbors import KNeighborsClassifier
  x = np.stack([c["video"].ravel() for c in clips]).astype(np.float32) / 255
  x -= x[:800].mean(0)
  results = {}
  for key in ("label", "motion"):
    y = np.array([c[key] for c in clips])
    linear = LogisticRegression(C=1e-3, max_iter=200).fit(x[:800], y[:800])
    knn = KNeighborsClassifier(20, metric="cosine").fit(x[:800], y[:800])
    results[key] = (linear.score(x[800:], y[800:]), knn.score(x[800:], y[800:]))
  print(f"\nraw pixels: class linear {results['label'][0]:.3f} / 20-NN {results['label'][1]:.3f}"
        f" (chance 0.1); motion linear {results['motion'][0]:.3f} / 20-NN "
        f"{results['motion'][1]:.3f} (chance 0.167)")
  assert max(results["label"]) < 0.5
