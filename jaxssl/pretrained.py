"""Use a pretrained model: `jaxssl.load(path)` -> `Pretrained`, whose `embed` maps NumPy arrays
(or caption strings) to NumPy features with exactly the evaluators' preprocessing.

`path` is either
  a workdir    of a jaxssl run: config.json, data_info.json (written when training starts) and
               checkpoints/<step>/ (the latest is loaded unless `step` is given); or
  an export    written by `python -m jaxssl.export`: model.json (config, data_info, step,
               preprocessing constants, embedding sizes) and variables/ (an orbax checkpoint of
               {"params", "model_state"}, no optimizer state).
`load_variables(path)` gives the raw {"params", "model_state"} of either (used by `init_from`).

What `embed` returns per modality (`output=` picks another of the model's embeddings):
  image (N, H, W, C) uint8, or float in [0, 1]; C in {1, 3}  -> "features" (the encoder's)
  video (N, T, H, W, 3) uint8 or float in [0, 1]             -> "video_features" (also video_va,
                                                                video_vat)
  audio (N, samples) float waveform                          -> "audio_features" (also audio_va)
  text  list of N strings, or int token ids (N, L)           -> "text_vat"
Images are resized to the model's size on the host as the image evaluator's loader does; clips go
in as the multimodal evaluator feeds them. Batches of `batch_size` (default: the run's
eval.batch_size, so features equal the evaluation's bit for bit) run on every local device; each
(modality, batch shape) compiles once.
"""
import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jaxssl import checkpoint, config_base, methods, sharding
from jaxssl.data import pipeline, text
from jaxssl.evaluators import batching

EXPORT_FORMAT = "jaxssl-export/1"
DATA_INFO_FILE, MODEL_FILE, VARIABLES_DIR = "data_info.json", "model.json", "variables"
DEFAULT_OUTPUT = {"image": "features", "video": "video_features", "audio": "audio_features",
                  "text": "text_vat"}


def data_info(source, image_size) -> dict:
  """What a model needs from its training data besides the config: written to data_info.json.
  image_size: the model's input size (config.data.image_size; the data are resized to it)."""
  tokenizer = getattr(source, "tokenizer", None)
  return dict(image_size=int(image_size), num_classes=int(source.num_classes),
              class_names=list(source.class_names),
              # WordTokenizer(words) sorts its words, so this list rebuilds the same ids.
              vocabulary=list(tokenizer.words[2:]) if tokenizer is not None else None)


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def kind(path) -> str:
  """'export' or 'workdir'; a one-line error naming what was expected otherwise."""
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path} does not exist: expected a jaxssl workdir (config.json, "
                            "checkpoints/) or an export (model.json, variables/)")
  if os.path.exists(os.path.join(path, MODEL_FILE)):
    return "export"
  if os.path.exists(os.path.join(path, "config.json")):
    return "workdir"
  raise FileNotFoundError(f"{path} is neither a jaxssl workdir (no config.json) nor an export "
                          f"(no {MODEL_FILE})")


def read_config(path) -> ml_collections.ConfigDict:
  """The locked config of a workdir or an export."""
  saved = _read_json(os.path.join(path, MODEL_FILE))["config"] if kind(path) == "export" else \
      _read_json(os.path.join(path, "config.json"))
  return ml_collections.ConfigDict(saved).lock()


def _read_data_info(path) -> dict:
  if kind(path) == "export":
    return _read_json(os.path.join(path, MODEL_FILE))["data_info"]
  file = os.path.join(path, DATA_INFO_FILE)
  if not os.path.exists(file):
    raise FileNotFoundError(f"{file} is missing: it is written when a run starts; run "
                            f"`python -m jaxssl.main --workdir={path} --mode=eval` to write it")
  return _read_json(file)


def load_variables(path, step=None) -> tuple[int, dict]:
  """(step, {"params", "model_state"}) as host NumPy arrays, from a workdir or an export."""
  if kind(path) == "export":
    if step is not None:
      raise ValueError(f"{path} is an export of one step; load it without step=")
    meta = _read_json(os.path.join(path, MODEL_FILE))
    directory = os.path.abspath(os.path.join(path, VARIABLES_DIR))
    with ocp.StandardCheckpointer() as ckpt:
      target = checkpoint.host_target(ckpt.metadata(directory).item_metadata)
      return meta["step"], ckpt.restore(directory, target)
  step, state = checkpoint.load_params(path, step)
  return step, {"params": state["params"], "model_state": state["model_state"]}


def load(path, step=None) -> "Pretrained":
  """The model of a workdir (its latest checkpoint, or `step`) or of an export."""
  step, variables = load_variables(path, step)
  return Pretrained(read_config(path), _read_data_info(path), variables, step)


class Pretrained:
  """A loaded model: `config`, `data_info`, `step`, `params`, `model_state` (replicated on the
  local devices), `modalities` and `embed`."""

  def __init__(self, config, data_info, variables, step):
    self.config, self.data_info, self.step = config, data_info, step
    self.method = methods.build(config, methods.DataInfo(data_info["image_size"],
                                                         data_info["num_classes"]))
    self.multimodal = hasattr(self.method, "embed_modalities")
    self.modalities = tuple(self.method.modalities) if self.multimodal else ("image",)
    self.mesh = sharding.make_mesh(dict(data=-1, fsdp=1, model=1))
    replicated = sharding.replicated(self.mesh)
    self.params = jax.device_put(variables["params"], replicated)
    self.model_state = jax.device_put(variables["model_state"], replicated)
    vocabulary = data_info.get("vocabulary")
    self.tokenizer = text.WordTokenizer(vocabulary) if vocabulary is not None else None
    if self.multimodal:
      fn = lambda p, s, batch: self.method.embed_modalities(p, s, **batch)  # noqa: E731
    else:
      fn = lambda p, s, batch: {"features": self.method.embed(p, s, batch["image"])}  # noqa: E731
    self._embed = jax.jit(fn, out_shardings=replicated,
                          compiler_options=config_base.compiler_options(config))

  def embed(self, x, modality=None, batch_size=None, output=None) -> np.ndarray:
    """(N, D) float32 features of N inputs of `modality` (see the module docstring)."""
    modality = modality or self._guess_modality(x)
    if modality not in self.modalities:
      raise ValueError(f"this {self.config.method} model embeds {', '.join(self.modalities)}; "
                       f"not {modality!r}")
    x = self._prepare(modality, x)
    size = min(batch_size or self.config.eval.batch_size, max(len(x), 1))
    out = batching.apply_in_batches(
        lambda b: self._embed(self.params, self.model_state, b), {modality: x}, self.mesh,
        batching.round_batch_size(size, self.mesh))
    output = output or DEFAULT_OUTPUT[modality]
    if output not in out:
      raise ValueError(f"output={output!r}: {modality} gives {sorted(out)}")
    return out[output]

  def embedding_sizes(self) -> dict:
    """{modality: {output: D}}, from traced shapes (nothing runs)."""
    d, s = self.config.data, self.data_info["image_size"]
    dummies = dict(image=np.zeros((2, s, s, 3), np.uint8),
                   video=np.zeros((2, d.num_frames, s, s, 3), np.uint8),
                   audio=np.zeros((2, round(d.num_frames / d.fps * d.sample_rate)), np.float32),
                   text=np.zeros((2, d.max_caption_len), np.int32))
    return {m: {k: int(v.shape[-1]) for k, v in jax.eval_shape(
        self._embed, self.params, self.model_state, {m: dummies[m]}).items()}
            for m in self.modalities}

  def _guess_modality(self, x):
    if len(self.modalities) == 1:
      return self.modalities[0]
    if isinstance(x, (list, tuple)) or (np.asarray(x).dtype.kind in "iu" and np.ndim(x) == 2):
      return "text"
    guess = {5: "video", 2: "audio"}.get(np.ndim(x))
    if guess is None:
      raise ValueError(f"cannot tell the modality of an array of shape {np.shape(x)}; pass "
                       f"modality= one of {self.modalities}")
    return guess

  def _prepare(self, modality, x):
    """Host arrays as the evaluators hold them; a one-line error for anything else."""
    if modality == "text":
      if isinstance(x, (list, tuple)) and all(isinstance(s, str) for s in x):
        if self.tokenizer is None:
          raise ValueError("this model's data has no vocabulary; pass token ids (N, L)")
        return self.tokenizer.encode_batch(list(x), self.config.data.max_caption_len)
      x = np.asarray(x)
      if x.ndim != 2 or x.dtype.kind not in "iu":
        raise ValueError(f"text: expected a list of strings or int token ids (N, L), got "
                         f"{x.dtype} {x.shape}")
      return x.astype(np.int32)
    x = np.asarray(x)
    if modality == "audio":
      if x.ndim != 2 or x.dtype.kind != "f":
        raise ValueError(f"audio: expected float waveforms (N, samples), got {x.dtype} {x.shape}")
      return x.astype(np.float32)
    ndim, channels = (4, (1, 3)) if modality == "image" else (5, (3,))
    layout = "(N, H, W, C)" if modality == "image" else "(N, T, H, W, 3)"
    if x.ndim != ndim or x.shape[-1] not in channels:
      raise ValueError(f"{modality}: expected {layout} with C in {channels}, got {x.shape}")
    if x.dtype.kind == "f":
      if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{modality}: float pixels must be in [0, 1], got [{x.min()}, {x.max()}]")
      x = x.astype(np.float32)
    elif x.dtype != np.uint8:
      raise ValueError(f"{modality}: expected uint8 or float pixels, got {x.dtype}")
    return pipeline.preprocess(x, self.data_info["image_size"]) if modality == "image" else x
