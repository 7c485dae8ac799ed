"""Multimodal evaluator (video, audio, text): retrieval, zero-shot classification, linear probes.

The method provides `embed_modalities(params, model_state, video=None, audio=None, text=None)`
-> dict of float32 (B, D) embeddings, not normalised:
  video -> video_features (the encoder's output, for probes), video_va, video_vat
  audio -> audio_features, audio_va
  text (B, Lt) int32 -> text_vat
A method may declare the modalities it embeds as `modalities` (default: all three; MIL-NCE:
video and text): only those are passed, and the metrics whose keys are missing are skipped.
Every embedding is L2-normalised here; similarity is cosine.

Metrics over the `eval.num_test` held-out clips (caption 0 of each clip is its text):
  t2v/*, v2t/*   text->video and video->text retrieval in the VAT space: R@1, R@5, R@10 and the
                 median rank of the clip's own caption/clip among all N (`retrieval.ranks`)
  a2v/*          audio->video retrieval in the VA space, same numbers
  zeroshot/top1  object class of each video = the class whose prompts (`eval.prompts_per_class`
                 captions per class from the dataset, embeddings averaged) are most similar
  linear/video/top1, linear/audio/top1
                 linear probes (`linear.py`) of video_features / audio_features, trained on
                 `eval.num_train` clips of the train split, scored on the held-out labels
Baselines: the same numbers for the randomly initialised model ("/random_init", by calling
`evaluate` with it) and linear probes of raw inputs ("/raw_input": video frames average-pooled
to 8x8 pixels, the audio's log power in 64 log-spaced bands).
Figures: plots/retrievals.png (example text->video retrievals), plots/embeddings.png (video
features coloured by class) and, for a masked autoencoder (`reconstruct(params, model_state,
video)`, VideoMAE), plots/reconstructions.png.
"""
import functools

import jax
import numpy as np

from jaxssl import config_base, sharding
from jaxssl.data import pipeline
from jaxssl.evaluators import batching, linear, plots, retrieval

_NUM_EXAMPLES, _TOP_K = 5, 5  # Rows and columns of the retrieval figure.


class Evaluator:

  def __init__(self, config, method, mesh, train_source, test_source):
    if not hasattr(method, "embed_modalities"):
      raise ValueError(f"eval.name=multimodal needs a method with embed_modalities; "
                       f"{config.method!r} has none")
    self.config, self.mesh = config, mesh
    self.modalities = tuple(getattr(method, "modalities", ("video", "audio", "text")))
    size = config.data.image_size
    self.test = pipeline.load_arrays(test_source, image_size=size,
                                     max_examples=config.eval.num_test,
                                     bad_records=config.data.bad_records)
    self.num_classes = test_source.num_classes
    self.class_names = test_source.class_names
    self.tokenizer = test_source.tokenizer
    self.train = None
    if self.num_classes:  # Probes need labels; converted data may have none.
      train = pipeline.load_arrays(train_source, image_size=size,
                                   max_examples=config.eval.num_train,
                                   bad_records=config.data.bad_records)
      self.train = {k: train[k] for k in ("video", "audio", "label") if k in train}
    self.prompts = self.prompt_class = None
    if self.num_classes and hasattr(test_source, "class_prompts"):
      groups = test_source.class_prompts(config.eval.prompts_per_class)
      self.prompts = self.tokenizer.encode_batch([p for g in groups for p in g],
                                                 self.test["text"].shape[-1])
      self.prompt_class = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    self.batch_size = batching.round_batch_size(config.eval.batch_size, mesh)
    jit = functools.partial(jax.jit, out_shardings=sharding.replicated(mesh),
                            compiler_options=config_base.compiler_options(config))
    self._embed = jit(lambda p, s, batch: method.embed_modalities(p, s, **batch))
    self._reconstruct = jit(method.reconstruct) if hasattr(method, "reconstruct") else None

  def embed(self, params, model_state, arrays) -> dict:
    """{key: (N, D) float32} of embed_modalities over host arrays {video, audio, text}."""
    return batching.apply_in_batches(lambda b: self._embed(params, model_state, b), arrays,
                                     self.mesh, self.batch_size)

  def _modalities(self, arrays, with_text):
    out = {k: arrays[k] for k in ("video", "audio") if k in arrays and k in self.modalities}
    if with_text and "text" in self.modalities:
      out["text"] = arrays["text"][:, 0]  # Caption 0 is each clip's query.
    return out

  def evaluate(self, params, model_state, suffix="", plots_dir=None):
    """The metrics of the module docstring, keys + suffix; with plots_dir, also the figures."""
    e = self.embed(params, model_state, self._modalities(self.test, with_text=True))
    results = {}
    t2v = None
    if "text_vat" in e and "video_vat" in e:
      t2v = retrieval.ranks(e["text_vat"], e["video_vat"])
      results.update(retrieval.summary("t2v", t2v))
      results.update(retrieval.summary("v2t", retrieval.ranks(e["video_vat"], e["text_vat"])))
    if "audio_va" in e and "video_va" in e:
      results.update(retrieval.summary("a2v", retrieval.ranks(e["audio_va"], e["video_va"])))
    if self.prompts is not None and "video_vat" in e and "text_vat" in e:
      prompts = self.embed(params, model_state, {"text": self.prompts})["text_vat"]
      classes = retrieval.class_embeddings(prompts, self.prompt_class, self.num_classes)
      results["zeroshot/top1"] = retrieval.zero_shot_top1(e["video_vat"], classes,
                                                           self.test["label"])
    wanted = [m for m in ("video", "audio") if f"{m}_features" in e]
    if self.train is not None and wanted:
      train = self.embed(params, model_state, self._modalities(self.train, with_text=False))
      for m in wanted:
        results[f"linear/{m}/top1"] = self._probe(train[f"{m}_features"], e[f"{m}_features"])
    if plots_dir:
      self._plots(plots_dir, e, t2v)
      if self._reconstruct is not None:
        plots.reconstruction_figure(f"{plots_dir}/reconstructions.png",
                                    lambda x: self._reconstruct(params, model_state, x),
                                    self.test["video"], self.mesh)
    return {k + suffix: v for k, v in results.items()}

  def _probe(self, train_features, test_features):
    return linear.linear_top1(train_features, self.train["label"], test_features,
                              self.test["label"], num_classes=self.num_classes,
                              steps=self.config.eval.linear_steps)

  def input_baselines(self):
    """Linear probes of the raw inputs (none without labels)."""
    if self.train is None:
      return {}
    out = {"linear/video/top1/raw_input": self._probe(_pooled_pixels(self.train["video"]),
                                                      _pooled_pixels(self.test["video"]))}
    if "audio" in self.test and "audio" in self.modalities:  # No audio row for MIL-NCE.
      rate = self.config.data.sample_rate
      out["linear/audio/top1/raw_input"] = self._probe(_log_bands(self.train["audio"], rate),
                                                       _log_bands(self.test["audio"], rate))
    return out

  def _plots(self, plots_dir, e, t2v):
    if t2v is not None:
      queries = np.linspace(0, len(t2v) - 1, _NUM_EXAMPLES).round().astype(int)
      plots.retrieval_examples(
          f"{plots_dir}/retrievals.png",
          [self.tokenizer.decode(self.test["text"][i, 0]) for i in queries], self.test["video"],
          retrieval.top_k(e["text_vat"][queries], e["video_vat"], _TOP_K), queries, t2v[queries])
    key = "video_features" if "video_features" in e else "video_vat"
    if key in e and self.num_classes:
      plots.embedding_scatter(f"{plots_dir}/embeddings.png", e[key], self.test["label"],
                              self.class_names, f"held-out {key}")


def _pooled_pixels(video, side=8):
  """(N, T*side*side*3) float32 in [0, 1]: frames average-pooled to about side x side.

  Why pooled: the probe's cost grows with the input width (full 8x32x32 clips are 24,576
  numbers; pooled, 1,536), and this baseline runs in the budget of every training run.
  """
  n, t, s, _, c = video.shape
  f = max(s // side, 1)
  m = s // f * f
  x = video[:, :, :m, :m].reshape(n, t, m // f, f, m // f, f, c)
  return (x.mean((3, 5), dtype=np.float32) / 255).reshape(n, -1)


def _log_bands(audio, rate, num_bands=64):
  """(N, <= num_bands) log power spectrum in log-spaced bands from 50 Hz (or rate / 8 if
  lower) to Nyquist; bands narrower than a frequency bin merge."""
  power = np.abs(np.fft.rfft(audio, axis=-1)) ** 2
  freqs = np.fft.rfftfreq(audio.shape[-1], 1 / rate)
  edges = np.unique(np.searchsorted(freqs, np.geomspace(min(50.0, rate / 8), rate / 2,
                                                        num_bands + 1)))
  return np.log(np.add.reduceat(power, edges[:-1], axis=-1) + 1e-6).astype(np.float32)
