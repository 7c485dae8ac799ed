"""Export a run's model: python -m jaxssl.export --workdir=W --out=DIR [--step=N]

DIR gets
  variables/   an orbax checkpoint of {"params", "model_state"} (the model's trained parameters
               and BatchNorm statistics; no optimizer state), readable with
               `orbax.checkpoint.StandardCheckpointer().restore(DIR/variables)`;
  model.json   format, method, step, the run's config, data_info (image size, classes,
               vocabulary), the preprocessing constants the model expects and the size of each
               embedding it gives.
`jaxssl.load(DIR)` reloads it without the workdir or the data, to the same embeddings bit for bit.
"""
import argparse
import json
import os
import shutil
import sys

import orbax.checkpoint as ocp

from jaxssl import pretrained


_STANDARDIZED = "per image and channel: (x - mean) / max(std, 0.05) over its pixels"
_INPUT_NORM_DOCS = {
    "fixed": "(x - 0.5) / 0.5 per channel", "per_image": _STANDARDIZED,
    "per_image+mean": _STANDARDIZED + ", then 3 constant channels (mean - 0.5) / 0.25"}


def preprocessing(config) -> dict:
  """The input conventions of the model, for users outside jaxssl."""
  d = config.data
  out = dict(image_size=d.image_size, pixels="uint8 [0, 255] or float [0, 1], RGB",
             input_norm=config.input_norm,
             input_norm_doc=_INPUT_NORM_DOCS[config.input_norm])
  if "video" in config:
    out.update(num_frames=d.num_frames, fps=d.fps, sample_rate=d.sample_rate,
               max_caption_len=d.max_caption_len, text="word ids of data_info.vocabulary + 2 "
               "(0 = padding, 1 = unknown), right-padded",
               spectrogram={k: config.audio[k] for k in ("num_mel_bins", "frame_length",
                                                         "frame_step", "lower_hz", "upper_hz")})
  return out


def export(workdir, out, step=None) -> str:
  """Writes the export of `workdir` (latest checkpoint, or `step`) to `out`; returns `out`."""
  if os.path.exists(out):
    raise FileExistsError(f"--out={out} exists; choose a new directory")
  model = pretrained.load(workdir, step)
  tmp = out.rstrip("/") + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  variables = {"params": model.params, "model_state": model.model_state}
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(os.path.abspath(os.path.join(tmp, pretrained.VARIABLES_DIR)), variables)
  meta = dict(format=pretrained.EXPORT_FORMAT, method=model.config.method, step=model.step,
              source=os.path.abspath(workdir), config=json.loads(model.config.to_json_best_effort()),
              data_info=model.data_info, preprocessing=preprocessing(model.config),
              embeddings=model.embedding_sizes())
  with open(os.path.join(tmp, pretrained.MODEL_FILE), "w") as f:
    json.dump(meta, f, indent=1, sort_keys=True)
  os.replace(tmp, out)  # Complete or absent: a kill mid-write leaves only DIR.tmp behind.
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m jaxssl.export", description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="workdir of a jaxssl run")
  parser.add_argument("--out", required=True, help="directory to write (must not exist)")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  args = parser.parse_args(argv)
  try:
    path = export(args.workdir, args.out, args.step)
  except (FileNotFoundError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"exported {args.workdir} to {path}")


if __name__ == "__main__":
  main()
