"""The keys every jaxssl config has, and their validation.

Configs in configs/<method>.py start from `base_config()` and override fields; the result is
locked, so a typo on the command line (`--config.bach_size=...`) fails at start instead of being
silently added. Every field below has a fixed type: ml_collections refuses a wrong-typed override.
"""
import difflib
import json

import jax
import ml_collections

DATASETS = ("shapes", "digits", "fashion_mnist", "idx", "tfds", "avshapes", "av_records")
# Datasets of clips (video, audio, captions) rather than images: the image evaluator cannot read them.
VIDEO_DATASETS = ("avshapes", "av_records")
OPTIMIZERS = ("lars", "sgd", "adamw")
INPUT_NORMS = ("fixed", "per_image", "per_image+mean")


def base_config():
  c = ml_collections.ConfigDict()
  c.method = ""  # module under jaxssl.methods, e.g. "simclr"
  c.seed = 0
  c.dataset = "shapes"
  c.batch_size = 256  # global, over all devices and processes
  c.total_steps = 1000
  c.log_every = 20
  c.eval_every = 0  # 0: evaluate only at the end
  c.ckpt_every = 200
  c.keep_checkpoints = 3
  c.compute_dtype = "float32"  # accelerator variants set bfloat16
  # CPU only (`compiler_options`): XLA hands dots and convolutions to YNNPACK. Measured on the
  # 2-core CPU: a ResNet-18 SimCLR step 2x faster; matmul-only steps (ViTs) ~4% slower.
  c.cpu_ynnpack = True
  c.init_from = ""  # a workdir whose encoder initialises this run (probes, fine-tuning)
  c.nan_policy = "stop"  # "stop": fail naming the step; "skip": drop the update and go on
  c.overwrite = False  # a workdir holding a run of another config: delete it (else refuse)
  # How images in [0, 1] become model inputs (jaxssl.augment.model_input): "fixed" maps to [-1, 1];
  # "per_image" standardises each image's channels over its pixels, which removes its global
  # brightness, contrast and colour cast (instance cues that small synthetic datasets offer).
  c.input_norm = "fixed"

  # Device mesh (jaxssl.sharding): sizes of the data / fsdp / model axes (-1: the rest), or a
  # preset by name: "dp", "fsdp" or "fsdp+tp" (--config.mesh.preset=fsdp).
  c.mesh = ml_collections.ConfigDict(dict(preset="", data=-1, fsdp=1, model=1))

  c.data = ml_collections.ConfigDict()
  c.data.image_size = 32
  c.data.data_dir = ""
  c.data.tfds_name = ""
  c.data.image_key = "image"
  c.data.label_key = "label"
  c.data.num_train = 50_000  # procedural datasets only
  c.data.num_test = 2_000
  c.data.seed = 0  # procedural datasets: the generated data, independent of the training seed
  c.data.num_workers = 0  # grain worker processes; 0 = a prefetch thread in this process
  # A record that cannot be decoded: "skip" (replaced by the next good one, counted in the logs)
  # or "strict" (stop, naming the record).
  c.data.bad_records = "skip"
  # Clip geometry of the video datasets (avshapes generates it; av_records must match it).
  c.data.num_frames = 8
  c.data.fps = 8.0
  c.data.sample_rate = 8000  # audio samples per second; a clip has num_frames / fps seconds
  c.data.num_captions = 3  # K captions per clip (MIL-NCE's positive candidates)
  c.data.max_caption_len = 20  # tokens per caption, right-padded with 0
  c.data.vocab_size = 0  # text encoders' table size (set by text configs); must cover the data's
  # avshapes: clips in scenes of this many (1: independent clips) that differ only in the
  # object's class and the nuisances; batches keep a scene's clips together (hard negatives).
  c.data.scene_size = 1

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "lars"
  c.optimizer.base_lr = 0.3  # scaled by batch_size / 256 (Goyal et al.), as SimCLR does
  c.optimizer.warmup_steps = 100
  c.optimizer.weight_decay = 1e-6
  c.optimizer.momentum = 0.9
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.grad_clip = 0.0  # 0 = off
  c.optimizer.layer_decay = 1.0  # < 1: layer-wise learning-rate decay of a ViT (fine-tuning)

  c.eval = ml_collections.ConfigDict()
  # Module under jaxssl/evaluators/: "image" (kNN + linear probe of `embed`) or "multimodal"
  # (retrieval, zero-shot, linear probes of `embed_modalities`).
  c.eval.name = "image"
  c.eval.num_train = 5_000  # kNN memory bank / linear-probe training set (from the train split)
  c.eval.num_test = 2_000  # held-out queries (from the test split)
  c.eval.knn_k = 20
  c.eval.knn_temperature = 0.07
  c.eval.linear_steps = 300
  c.eval.batch_size = 500
  c.eval.baselines = True  # also evaluate a random-init encoder and raw inputs, once per run
  c.eval.prompts_per_class = 32  # multimodal: captions averaged per class for zero-shot
  return c


# Keys a resumed run may change: they affect the schedule of side effects, the layout over devices,
# the kernels (float rounding only) or the evaluation, never the trained numbers up to the
# restored step. (cpu_ynnpack also lets runs saved before the key existed resume.)
RESUMABLE_PREFIXES = ("total_steps", "log_every", "eval_every", "ckpt_every", "keep_checkpoints",
                      "nan_policy", "init_from", "mesh.", "eval.", "data.num_workers",
                      "data.bad_records", "overwrite", "cpu_ynnpack")


def compiler_options(config):
  """XLA compile options of the jitted train step, state init and evaluation functions, or None
  for XLA's defaults (also for config None: a method without one). Per jit rather than through
  XLA_FLAGS, so a config decides for itself in any process, also one whose backend is already
  running (tests, notebooks).

  cpu_ynnpack: XLA:CPU emits convolutions as loops that reach ~25% of the matmul peak here;
  routed to YNNPACK (XNNPACK's successor, an experimental XLA option) a ResNet's convolution
  gradients run ~4x faster. Reductions go with them: given dot fusions alone, XLA splits every
  reduction (batch and layer norms, softmax, bias gradients) into a reduce-window and a reduce,
  ~10x slower. YNNPACK's matmuls are a little slower than XLA's own, hence the knob. Ignored on
  accelerators.
  """
  if config is not None and config.get("cpu_ynnpack", False) and jax.default_backend() == "cpu":
    return {"xla_cpu_experimental_ynn_fusion_type":
            "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
  return None


def _flatten(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def resume_differences(saved: dict, config) -> list[str]:
  """'key: saved -> now' for every field that differs from a workdir's config.json and that a
  resumed run may not change (see RESUMABLE_PREFIXES)."""
  # The saved file went through JSON: compare like with like (tuples become lists).
  old, new = _flatten(saved), _flatten(json.loads(config.to_json_best_effort()))
  return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_PREFIXES)]


def suggest(key, candidates):
  """' (did you mean "x"?)' for the closest candidate key, or ''."""
  close = difflib.get_close_matches(key, list(candidates), n=1)
  return f' (did you mean "{close[0]}"?)' if close else ""


def validate(config, num_devices, num_processes=1):
  """Checks that cannot be expressed as types; raises ValueError naming the key and the fix."""
  if not config.method:
    raise ValueError("config.method is empty: set it to a module under jaxssl/methods/")
  if config.dataset not in DATASETS:
    raise ValueError(f"config.dataset={config.dataset!r} is unknown{suggest(config.dataset, DATASETS)}; "
                     f"choose one of {', '.join(DATASETS)}")
  if config.optimizer.name not in OPTIMIZERS:
    raise ValueError(f"config.optimizer.name={config.optimizer.name!r} is unknown"
                     f"{suggest(config.optimizer.name, OPTIMIZERS)}; choose one of {OPTIMIZERS}")
  if config.batch_size <= 0 or config.batch_size % num_devices:
    raise ValueError(f"config.batch_size={config.batch_size} must be a positive multiple of the "
                     f"device count ({num_devices})")
  if config.batch_size % num_processes:
    raise ValueError(f"config.batch_size={config.batch_size} must divide among {num_processes} processes")
  for key in ("total_steps", "log_every", "ckpt_every", "keep_checkpoints"):
    if config[key] <= 0:
      raise ValueError(f"config.{key}={config[key]} must be positive")
  if config.compute_dtype not in ("float32", "bfloat16"):
    raise ValueError(f"config.compute_dtype={config.compute_dtype!r}: use float32 or bfloat16")
  if config.input_norm not in INPUT_NORMS:
    raise ValueError(f"config.input_norm={config.input_norm!r} is unknown{suggest(config.input_norm, INPUT_NORMS)}; "
                     f"choose one of {', '.join(INPUT_NORMS)}")
  if config.input_norm == "per_image+mean" and "video" not in config:
    raise ValueError("config.input_norm='per_image+mean' (6 input channels) is for the clip "
                     "methods' video encoders (configs/mmv.py); use 'fixed' or 'per_image'")
  if config.nan_policy not in ("stop", "skip"):
    raise ValueError(f"config.nan_policy={config.nan_policy!r}: use stop or skip")
  if config.data.bad_records not in ("skip", "strict"):
    raise ValueError(f"config.data.bad_records={config.data.bad_records!r}: use skip or strict")
  from jaxssl import evaluators  # Imports jax: only validation needs it here.
  evaluators.get(config.eval.name)
  if config.dataset in VIDEO_DATASETS and config.eval.name == "image":
    raise ValueError(f"config.dataset={config.dataset!r} holds clips, not images: set "
                     "--config.eval.name=multimodal")
  for key in ("num_frames", "sample_rate", "num_captions", "max_caption_len"):
    if config.data[key] <= 0:
      raise ValueError(f"config.data.{key}={config.data[key]} must be positive")
  if config.data.fps <= 0:
    raise ValueError(f"config.data.fps={config.data.fps} must be positive")
  if config.data.scene_size != 1 and config.dataset != "avshapes":
    raise ValueError(f"config.data.scene_size={config.data.scene_size} is for the generated "
                     f"avshapes clips; config.dataset={config.dataset!r} has no scenes (set 1)")
  for key in ("num_train", "num_test", "batch_size", "prompts_per_class"):
    if config.eval[key] <= 0:
      raise ValueError(f"config.eval.{key}={config.eval[key]} must be positive")
