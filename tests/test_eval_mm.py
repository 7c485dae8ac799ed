"""Tests of the multimodal evaluator: retrieval metrics against NumPy references, zero-shot
classification, and the whole evaluator with an oracle method (perfect or random embeddings)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import config_base, evaluators, reporting, sharding
from jaxssl.data import text
from jaxssl.evaluators import retrieval

_N, _C = 1000, 5  # Held-out clips, classes.


# --- retrieval metrics --------------------------------------------------------------------------


def _reference_ranks(q, g):
  """Rank of item i for query i in a stable sort by decreasing cosine similarity."""
  qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
  gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
  order = np.argsort(-(qn @ gn.T), axis=1, kind="stable")
  return np.array([int(np.nonzero(order[i] == i)[0][0]) + 1 for i in range(len(q))])


def test_ranks_match_a_numpy_reference_with_ties():
  rng = np.random.default_rng(0)
  # Few distinct values and repeated rows: many exact ties, broken toward the lower index.
  q = rng.integers(-1, 2, (300, 3)).astype(np.float32)
  g = q.copy()
  g[::7] = rng.integers(-1, 2, (len(g[::7]), 3))
  g[5] = 0.0  # A zero vector: similarity 0 with everything, not NaN.
  want = _reference_ranks(q, g)
  got = retrieval.ranks(q, g, chunk=64)  # Chunks must not change anything.
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(retrieval.ranks(q, g), want)
  summary = retrieval.summary("t2v", got)
  for k in (1, 5, 10):
    assert summary[f"t2v/R@{k}"] == pytest.approx(np.mean(want <= k))
  assert summary["t2v/median_rank"] == np.median(want)
  top = retrieval.top_k(q[:20], g, 5)
  np.testing.assert_array_equal(top, np.argsort(-(retrieval.normalize(q[:20]) @
                                                  retrieval.normalize(g).T), 1, kind="stable")[:, :5])
  # Random continuous embeddings: no ties, the same answer.
  a, b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
  np.testing.assert_array_equal(retrieval.ranks(a, b), _reference_ranks(a, b))
  # Identical embeddings everywhere: rank i + 1 for query i (deterministic), so R@1 = 1 / N.
  same = np.ones((50, 4))
  np.testing.assert_array_equal(retrieval.ranks(same, same), np.arange(1, 51))


def test_zero_shot_prompt_ensembling():
  rng = np.random.default_rng(1)
  prompts = rng.normal(size=(12, 8))
  prompt_class = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
  classes = retrieval.class_embeddings(prompts, prompt_class, 4)
  unit = prompts / np.linalg.norm(prompts, axis=1, keepdims=True)
  want = np.stack([unit[prompt_class == c].mean(0) for c in range(4)])
  np.testing.assert_allclose(classes, want / np.linalg.norm(want, axis=1, keepdims=True),
                             rtol=1e-5)
  videos = rng.normal(size=(100, 8))
  labels = rng.integers(0, 4, 100)
  pred = np.argmax(videos @ want.T / np.linalg.norm(videos, axis=1, keepdims=True), 1)
  assert retrieval.zero_shot_top1(videos, classes, labels) == pytest.approx(np.mean(pred == labels))
  assert retrieval.zero_shot_top1(classes[labels], classes, labels) == 1.0


# --- the evaluator with an oracle method --------------------------------------------------------


def _word(prefix, number):
  """A letters-only word per number, as the tokenizer's words have no digits: ("n", 27) -> "nbb"."""
  letters = ""
  while True:
    number, digit = divmod(number, 26)
    letters = chr(ord("a") + digit) + letters
    if not number:
      return prefix + letters


class _Clips:
  """A clip source whose records encode their index and class in every modality, so an oracle
  method can embed them perfectly: video pixel (0, 0, 0) = (code % 256, code // 256, class),
  audio[:2] = (code, class), captions = "n<code> c<class>" (numbers spelt in letters)."""

  def __init__(self, num, offset):
    self.name, self.split, self.num = "oracle_clips", "test", num
    self.num_classes, self.class_names = _C, [f"class{c}" for c in range(_C)]
    self.tokenizer = text.WordTokenizer([_word("n", i) for i in range(_N)] +
                                       [_word("c", c) for c in range(_C)])
    self.codes = (np.arange(num) + offset) % _N
    self.labels = (np.arange(num) * 7 + offset) % _C

  def __len__(self):
    return self.num

  def get_batch(self, indices):
    code, label = self.codes[indices], self.labels[indices]
    video = np.zeros((len(indices), 2, 4, 4, 3), np.uint8)
    video[:, :, :, :, 0], video[:, :, :, :, 1] = (code % 256)[:, None, None, None], (
        code // 256)[:, None, None, None]
    video[:, :, :, :, 2] = label[:, None, None, None]
    audio = np.zeros((len(indices), 16), np.float32)
    audio[:, 0], audio[:, 1] = code, label
    captions = [f"{_word('n', i)} {_word('c', c)}" for i, c in zip(code, label)]
    tokens = self.tokenizer.encode_batch(captions, 6)
    return dict(video=video, audio=audio, text=np.stack([tokens, tokens], 1),
                label=label.astype(np.int32))

  def class_prompts(self, num_per_class):
    return [[_word("c", c)] * num_per_class for c in range(_C)]


class _Oracle:
  """embed_modalities of linear maps of one-hot codes/classes: `perfect_params` makes every
  cross-modal pair agree exactly; `init` (random maps) gives chance-level embeddings."""

  def __init__(self, vocab_size, modalities=("video", "audio", "text")):
    self.vocab_size, self.modalities = vocab_size, modalities
    self.shapes = dict(table=(vocab_size, _N + _C), video_code=(_N, _N + _C),
                       video_class=(_C, _N + _C), audio_code=(_N, _N), va_code=(_N, _N),
                       features=(_C, _C))

  def init(self, rng):
    keys = jax.random.split(rng, len(self.shapes))
    return {"params": {k: jax.random.normal(key, s) for key, (k, s) in zip(keys, self.shapes.items())}}

  def perfect_params(self, tokenizer):
    table = np.zeros(self.shapes["table"], np.float32)
    for i in range(_N):
      table[tokenizer.ids[_word("n", i)], i] = 1
    for c in range(_C):
      table[tokenizer.ids[_word("c", c)], _N + c] = 1
    eye = np.eye(_N + _C, dtype=np.float32)
    return dict(table=table, video_code=eye[:_N], video_class=eye[_N:], audio_code=eye[:_N, :_N],
                va_code=eye[:_N, :_N], features=np.eye(_C, dtype=np.float32))

  def embed_modalities(self, params, model_state, video=None, audio=None, text=None):
    del model_state
    out = {}
    if video is not None:
      pixel = video[:, 0, 0, 0].astype(jnp.int32)
      code, label = jax.nn.one_hot(pixel[:, 0] + 256 * pixel[:, 1], _N), jax.nn.one_hot(pixel[:, 2], _C)
      out.update(video_vat=code @ params["video_code"] + label @ params["video_class"],
                 video_va=code @ params["va_code"], video_features=label @ params["features"])
    if audio is not None:
      code = jax.nn.one_hot(audio[:, 0].astype(jnp.int32), _N)
      out.update(audio_va=code @ params["audio_code"],
                 audio_features=jax.nn.one_hot(audio[:, 1].astype(jnp.int32), _C) @ params["features"])
    if text is not None:
      out["text_vat"] = params["table"][text].sum(1)
    return out


def _evaluator(method, tmp_path=None):
  config = config_base.base_config()
  config.eval.name = "multimodal"
  config.eval.num_test, config.eval.num_train = _N, 300
  config.eval.batch_size, config.eval.linear_steps, config.eval.prompts_per_class = 200, 100, 2
  config.data.image_size = 4
  config.data.sample_rate = 16
  mesh = sharding.make_mesh(dict(data=-1, fsdp=1, model=1))  # The 8 fake devices of conftest.
  return evaluators.build(config, method, mesh, _Clips(600, offset=3), _Clips(_N, offset=0))


_KEYS = ("t2v/R@1", "t2v/R@5", "t2v/R@10", "t2v/median_rank", "v2t/R@1", "a2v/R@1",
         "zeroshot/top1", "linear/video/top1", "linear/audio/top1")


def test_evaluator_perfect_and_random_embeddings(tmp_path):
  source = _Clips(_N, 0)
  method = _Oracle(source.tokenizer.vocab_size)
  evaluator = _evaluator(method)
  assert len(evaluator.test["video"]) == _N and evaluator.test["text"].shape == (_N, 2, 6)
  perfect = evaluator.evaluate(method.perfect_params(source.tokenizer), {},
                               plots_dir=str(tmp_path / "plots"))
  assert set(perfect) == set(_KEYS + ("t2v/R@5", "v2t/R@5", "v2t/R@10", "v2t/median_rank",
                                      "a2v/R@5", "a2v/R@10", "a2v/median_rank"))
  for key in ("t2v/R@1", "v2t/R@1", "a2v/R@1", "zeroshot/top1", "linear/video/top1",
              "linear/audio/top1"):
    assert perfect[key] == 1.0, key
  assert perfect["t2v/median_rank"] == 1.0
  assert (tmp_path / "plots" / "retrievals.png").stat().st_size > 10_000
  assert (tmp_path / "plots" / "embeddings.png").stat().st_size > 10_000

  params = method.init(jax.random.key(0))["params"]
  random = evaluator.evaluate(params, {}, suffix="/random_init")
  assert set(random) == {k + "/random_init" for k in perfect}
  for key in ("t2v/R@1", "v2t/R@1", "a2v/R@1"):
    assert random[key + "/random_init"] < 0.02, key  # Chance: 1 / 1000.
  assert random["t2v/median_rank/random_init"] > 300
  # Raw inputs: the blue channel holds the class (one grey level per class), which a linear
  # probe reads well above chance (0.2).
  raw = evaluator.input_baselines()
  assert set(raw) == {"linear/video/top1/raw_input", "linear/audio/top1/raw_input"}
  assert raw["linear/video/top1/raw_input"] > 0.4


def test_evaluator_skips_what_a_video_text_method_cannot_embed():
  source = _Clips(_N, 0)
  method = _Oracle(source.tokenizer.vocab_size, modalities=("video", "text"))
  results = _evaluator(method).evaluate(method.perfect_params(source.tokenizer), {})
  assert results["t2v/R@1"] == 1.0 and results["zeroshot/top1"] == 1.0
  assert not [k for k in results if k.startswith("a2v") or "audio" in k]


def test_evaluator_registry_and_config_checks():
  assert evaluators.get("multimodal").__module__ == "jaxssl.evaluators.multimodal"
  assert evaluators.get("image").__module__ == "jaxssl.evaluators.image"
  with pytest.raises(ValueError, match="no module jaxssl/evaluators/nope.py"):
    evaluators.get("nope")
  with pytest.raises(ValueError, match="helper module"):
    evaluators.get("retrieval")
  with pytest.raises(ValueError, match="not a module name"):
    evaluators.get("../x")
  config = config_base.base_config()
  config.method, config.dataset = "simclr", "avshapes"
  with pytest.raises(ValueError, match="eval.name=multimodal"):
    config_base.validate(config, 1)
  config.eval.name = "multimodal"
  config_base.validate(config, 1)
  config.data.fps = 0.0
  with pytest.raises(ValueError, match="data.fps"):
    config_base.validate(config, 1)


def test_final_table_orders_tasks_and_formats_ranks(capsys, tmp_path):
  final = {"step": 10, "linear/video/top1": 0.5, "linear/video/top1/random_init": 0.2,
           "linear/video/top1/raw_input": 0.1, "t2v/median_rank": 3.0,
           "t2v/median_rank/random_init": 480.5, "t2v/R@10": 0.9, "t2v/R@1": 0.4,
           "a2v/R@1": 0.35, "zeroshot/top1": 0.6}
  reporting.print_table(final)
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].split() == ["metric", "trained", "random_init", "raw_input"]
  assert [line.split()[0] for line in lines[1:]] == [
      "t2v/R@1", "t2v/R@10", "t2v/median_rank", "a2v/R@1", "zeroshot/top1", "linear/video/top1"]
  assert lines[3].split()[1:] == ["3.0", "480.5", "-"]
  assert lines[6].split()[1:] == ["0.5000", "0.2000", "0.1000"]
  # The training plot keeps ranks off its [0, 1] axis.
  os.makedirs(tmp_path / "eval")
  reporting.write_json(str(tmp_path / "eval" / "step_10.json"), final)
  reporting.write_json(str(tmp_path / "eval" / "baselines.json"), {"t2v/R@1/random_init": 0.01})
  reporting.plot_run(str(tmp_path))
  assert (tmp_path / "plots" / "training.png").exists()
  assert json.load(open(tmp_path / "eval" / "step_10.json"))["t2v/R@1"] == 0.4
