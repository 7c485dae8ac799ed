"""Tests of jaxssl.data.avshapes (procedural audio-visual-text clips) and its tokenizer.

Beyond shapes and determinism, these check that the modalities really co-vary (the sound
identifies the class, audio onsets sit on the event frames, captions name the ground truth) and
that raw pixels stay a weak baseline. Measured numbers (ms per clip, probe accuracies) are
printed, not asserted tightly: run with `-s` to see them.
"""
import time

import numpy as np
import pytest

from jaxssl.data import avshapes, text

_NUM = 1000  # Clips shared by the statistical tests (~2 s to render).


@pytest.fixture(scope="module")
def clips():
  return [avshapes.render_clip(0, "train", i) for i in range(_NUM)]


def _same(a, b):
  return all(np.array_equal(a[k], b[k]) for k in ("video", "audio", "text", "events")) and all(
      a[k] == b[k] for k in ("captions", "label", "motion", "colour"))


def test_render_clip_is_a_pure_function_of_seed_split_index():
  clip = avshapes.render_clip(3, "train", 17)
  assert _same(clip, avshapes.render_clip(3, "train", 17))
  for other in (avshapes.render_clip(4, "train", 17), avshapes.render_clip(3, "test", 17),
                avshapes.render_clip(3, "train", 18)):
    assert clip["video"].tobytes() != other["video"].tobytes()
    assert clip["audio"].tobytes() != other["audio"].tobytes()
  # Caption count and length change only the text, never the clip itself.
  more = avshapes.render_clip(3, "train", 17, num_captions=5, max_caption_len=20)
  assert more["captions"][:1] == clip["captions"][:1] and more["text"].shape == (5, 20)
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
                             fps=16, num_captions=2, max_caption_len=12)
  assert big["video"].shape == (16, 48, 48, 3) and big["audio"].shape == (16000,)
  assert big["text"].shape == (2, 12)
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
  assert batch["video"].shape == (2, 8, 32, 32, 3) and batch["text"].shape == (2, 2, 16)
  assert batch["audio"].tobytes()[-32000:] == record["audio"].tobytes()
  with pytest.raises(IndexError):
    source[50]
  assert repr(source) == repr(avshapes.AVShapesSource(0, "train", 50, num_captions=2))
  assert "0x" not in repr(source)
  assert repr(source) != repr(avshapes.AVShapesSource(1, "train", 50, num_captions=2))
  config = dict(seed=0, num_train=50, num_test=10, image_size=32, num_captions=2)
  assert repr(avshapes.source_from_config("train", config)) == repr(source)
  assert len(avshapes.source_from_config("test", config)) == 10


def test_labels_motions_and_colours_cover_all_values(clips):
  first = clips[:200]
  for key, num in (("label", 10), ("motion", 6), ("colour", 8)):
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


def test_sound_identifies_the_class(clips):
  audio = np.stack([c["audio"] for c in clips])
  labels = np.array([c["label"] for c in clips])
  feats = _spectrum_features(audio)
  n_fit = 800
  centroids = np.stack([feats[:n_fit][labels[:n_fit] == k].mean(0) for k in range(10)])
  pred = np.argmin(((feats[n_fit:, None] - centroids) ** 2).sum(-1), -1)
  accuracy = float(np.mean(pred == labels[n_fit:]))
  motion = np.array([c["motion"] for c in clips])
  m_centroids = np.stack([feats[:n_fit][motion[:n_fit] == k].mean(0) for k in range(6)])
  m_pred = np.argmin(((feats[n_fit:, None] - m_centroids) ** 2).sum(-1), -1)
  print(f"\nnearest-centroid on audio spectra: class {accuracy:.3f} (chance 0.1), "
        f"motion {np.mean(m_pred == motion[n_fit:]):.3f} (chance 0.167)")
  assert accuracy > 0.5


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
      assert clip["motion"] in _phrases_in(caption, motion_phrases), caption
      assert avshapes.decode(ids) == caption and text.UNK_ID not in ids
      assert len(caption.split()) <= avshapes.MAX_CAPTION_WORDS
      wordings.add(caption)
  assert len(wordings) > 800  # Varied: nearly every caption is new.
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
