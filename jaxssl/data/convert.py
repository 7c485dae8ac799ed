"""Converts real video clips + captions to ArrayRecord shards for the `av_records` dataset.

  python -m jaxssl.data.convert --manifest=clips.jsonl --output=DIR \\
      [--num_frames=8 --fps=8 --image_size=32 --sample_rate=8000 --num_captions=3 \\
       --max_caption_len=20 --records_per_shard=1000]

then train with `--config.dataset=av_records --config.data.data_dir=DIR` (and the same clip
geometry in `--config.data.*`; the defaults here are `jaxssl.config_base`'s).

The manifest is JSONL (one object per line) or CSV (a header row), one clip per row:
  video     a file PyAV decodes (mp4, webm, ...); relative paths are from the manifest's folder
  audio     optional WAV file (PCM, any rate/channels); default: the video's own audio stream
  captions  a list of strings (JSONL), or captions separated by "|" (CSV); or "caption": one
  label     optional class name, on every row or on none (evaluation only)
  split     optional, default "train"
  start     optional start of the clip in the file, in seconds, default 0

Each clip becomes `num_frames` frames at `fps` from `start` (the frame shown at each instant;
the last frame repeats past the end of a short file), each resized so its short side is
`image_size` and centre-cropped square; mono audio resampled to `sample_rate` over the same
span (zero-padded past the end); K = `num_captions` captions (a clip's captions repeat
cyclically when it has fewer), tokenised with a word vocabulary built from the train split's
captions and the class names.
"""
import csv
import json
import math
import os
import sys
import wave

import numpy as np
from absl import app, flags

from jaxssl import config_base
from jaxssl.data import av_records, text

_DEFAULTS = config_base.base_config().data


def read_manifest(path) -> list[dict]:
  """Rows as dicts with video, audio (path or None), captions (list), label, split, start."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"manifest {path} not found")
  with open(path, newline="") as f:
    if path.endswith(".csv"):
      raw = list(csv.DictReader(f))
    else:
      raw = []
      for line_no, line in enumerate(f, 1):
        if line.strip():
          try:
            raw.append(json.loads(line))
          except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line_no}: not a JSON object ({e})") from None
  base = os.path.dirname(os.path.abspath(path))
  rows = []
  for row_no, r in enumerate(raw, 1):
    where = f"{path} row {row_no}"
    captions = r.get("captions", r.get("caption"))
    if isinstance(captions, str):
      captions = [c.strip() for c in captions.split("|")]
    captions = [c for c in captions or [] if c]
    if not r.get("video") or not captions:
      raise ValueError(f"{where}: needs a 'video' path and at least one caption, got {r}")
    resolve = lambda p: os.path.join(base, p) if p else None  # noqa: E731
    label = r.get("label")
    rows.append(dict(where=where, video=resolve(r["video"]), audio=resolve(r.get("audio")),
                     captions=captions, label=None if label in (None, "") else str(label),
                     split=r.get("split") or "train", start=float(r.get("start") or 0.0)))
  if not rows:
    raise ValueError(f"manifest {path} has no rows")
  if len({r["label"] is None for r in rows}) > 1:
    raise ValueError(f"{path}: give a 'label' on every row or on none")
  return rows


def read_video(path, start, num_frames, fps, size) -> np.ndarray:
  """uint8 (num_frames, size, size, 3): the frame shown at start + i / fps, for each i."""
  import av  # PyAV: only conversion needs it.
  from PIL import Image
  wanted = start + np.arange(num_frames) / fps
  times, frames = [], []
  with av.open(path) as container:
    if not container.streams.video:
      raise ValueError("no video stream")
    stream = container.streams.video[0]
    if start > 0:  # To the key frame before `start`; decoding goes on from there.
      container.seek(int(start / stream.time_base), stream=stream)
    for frame in container.decode(stream):
      if frame.time is None:
        raise ValueError("video frames carry no timestamps")
      if frame.time > wanted[-1] + 1e-6:
        break
      if times and times[-1] <= wanted[0] + 1e-6 and frame.time <= wanted[0] + 1e-6:
        times.pop(), frames.pop()  # Only the last frame before the clip starts is shown.
      image = frame.to_image()
      scale = size / min(image.size)
      w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
      image = image.resize((w, h), Image.BILINEAR)
      left, top = (w - size) // 2, (h - size) // 2
      frames.append(np.asarray(image.crop((left, top, left + size, top + size)), np.uint8))
      times.append(frame.time)
  if not frames:
    raise ValueError("no decodable video frames")
  shown = np.clip(np.searchsorted(np.asarray(times), wanted + 1e-6, side="right") - 1, 0, None)
  return np.stack([frames[i] for i in shown])


def _resample(x, rate_in, rate_out):
  from scipy.signal import resample_poly  # Polyphase: anti-aliased, exact for integer ratios.
  if rate_in == rate_out:
    return x
  g = math.gcd(int(rate_in), int(rate_out))
  return resample_poly(x, int(rate_out) // g, int(rate_in) // g).astype(np.float32)


def read_wav(path) -> tuple[np.ndarray, int]:
  """(mono float32 in [-1, 1], sample rate) of a PCM WAV file, with stdlib `wave`."""
  with wave.open(path, "rb") as w:
    channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
    raw = w.readframes(w.getnframes())
  if width == 1:  # 8-bit WAV is unsigned.
    x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
  elif width == 3:  # 24-bit: widen to int32 by hand.
    b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
    x = ((b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 8).astype(np.float32) / 2**23
  elif width in (2, 4):
    x = np.frombuffer(raw, f"<i{width}").astype(np.float32) / 2 ** (8 * width - 1)
  else:
    raise ValueError(f"unsupported WAV sample width {width} bytes")
  return x.reshape(-1, channels).mean(1), rate


def read_container_audio(path) -> tuple[np.ndarray, int]:
  """(mono float32, sample rate) of the first audio stream of a media file."""
  import av
  with av.open(path) as container:
    if not container.streams.audio:
      raise ValueError("no audio stream (give the row an 'audio' WAV file)")
    stream = container.streams.audio[0]
    rate = stream.rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks = [f.to_ndarray().reshape(-1) for frame in container.decode(stream)
              for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
  if not chunks:
    raise ValueError("no decodable audio")
  return np.concatenate(chunks).astype(np.float32), rate


def clip_audio(samples, rate, start, duration, sample_rate) -> np.ndarray:
  """float32 (round(duration * sample_rate),): the span [start, start + duration), resampled."""
  lo = int(round(start * rate))
  span = samples[lo:lo + int(math.ceil(duration * rate)) + 1]
  out = np.zeros(int(round(duration * sample_rate)), np.float32)
  resampled = _resample(span, rate, sample_rate)[:len(out)]
  out[:len(resampled)] = resampled
  return np.clip(out, -1.0, 1.0)


def convert_row(row, geometry, tokenizer, class_index) -> bytes:
  g = geometry
  for key in ("video", "audio"):
    if row[key] and not os.path.isfile(row[key]):
      raise FileNotFoundError(f"{row['where']}: {key} file {row[key]} not found")
  current = row["video"]
  try:
    video = read_video(current, row["start"], g["num_frames"], g["fps"], g["image_size"])
    current = row["audio"] or row["video"]
    samples, rate = read_wav(current) if row["audio"] else read_container_audio(current)
  except Exception as e:  # PyAV, wave and PIL raise many types; all mean "cannot read this file".
    raise ValueError(f"{row['where']}: cannot read {current}: {type(e).__name__}: {e}") from e
  audio = clip_audio(samples, rate, row["start"], g["num_frames"] / g["fps"], g["sample_rate"])
  captions = [row["captions"][i % len(row["captions"])] for i in range(g["num_captions"])]
  label = class_index[row["label"]] if class_index else -1
  return av_records.encode_record(video, audio,
                                  tokenizer.encode_batch(captions, g["max_caption_len"]), label)


def convert(manifest, output, records_per_shard=1000, **geometry) -> dict:
  """Writes output/<split>-*.array_record and output/metadata.json; returns the metadata."""
  from array_record.python.array_record_module import ArrayRecordWriter
  g = {k: geometry.get(k, _DEFAULTS[k]) for k in av_records.GEOMETRY}
  rows = read_manifest(manifest)
  class_names = sorted({r["label"] for r in rows if r["label"] is not None})
  # Train captions only (when there is a train split): held-out captions stay unseen words.
  vocab_rows = [r for r in rows if r["split"] == "train"] or rows
  words = {w for r in vocab_rows for c in r["captions"] for w in text.split_words(c)}
  words |= {w for name in class_names for w in text.split_words(name)}
  tokenizer = text.WordTokenizer(words)
  class_index = {name: i for i, name in enumerate(class_names)}
  os.makedirs(output, exist_ok=True)
  splits = {}
  for split in sorted({r["split"] for r in rows}):
    chosen = [r for r in rows if r["split"] == split]
    num_shards = -(-len(chosen) // records_per_shard)
    files = [f"{split}-{i:05d}-of-{num_shards:05d}.array_record" for i in range(num_shards)]
    for i, name in enumerate(files):
      writer = ArrayRecordWriter(os.path.join(output, name), "group_size:1")
      for row in chosen[i * records_per_shard:(i + 1) * records_per_shard]:
        writer.write(convert_row(row, g, tokenizer, class_index))
      writer.close()
    splits[split] = {"num_records": len(chosen), "files": files}
  meta = dict(format=av_records.FORMAT, **g, vocabulary=list(tokenizer.words[2:]),
              class_names=class_names, splits=splits)
  with open(os.path.join(output, av_records.METADATA), "w") as f:
    json.dump(meta, f, indent=1)
  return meta


def main(argv):
  del argv
  f = flags.FLAGS
  try:
    meta = convert(f.manifest, f.output, f.records_per_shard,
                   **{k: f[k].value for k in av_records.GEOMETRY})
  except (FileNotFoundError, ValueError) as e:  # Bad input, named in the message: no traceback.
    sys.exit(f"error: {e}")
  counts = ", ".join(f"{s}: {v['num_records']}" for s, v in meta["splits"].items())
  print(f"wrote {counts} clips, {len(meta['vocabulary'])} words, "
        f"{len(meta['class_names'])} classes to {f.output}")


if __name__ == "__main__":
  # Flags are defined only when run as a program, so importing this module defines none.
  flags.DEFINE_string("manifest", None, "JSONL or CSV manifest of the clips.", required=True)
  flags.DEFINE_string("output", None, "Directory to write shards and metadata to.", required=True)
  flags.DEFINE_integer("records_per_shard", 1000, "Clips per ArrayRecord file.")
  flags.DEFINE_integer("num_frames", _DEFAULTS.num_frames, "Frames per clip.")
  flags.DEFINE_float("fps", _DEFAULTS.fps, "Frame rate of the clips.")
  flags.DEFINE_integer("image_size", _DEFAULTS.image_size, "Side of the square frames.")
  flags.DEFINE_integer("sample_rate", _DEFAULTS.sample_rate, "Audio sample rate, Hz.")
  flags.DEFINE_integer("num_captions", _DEFAULTS.num_captions, "Captions stored per clip (K).")
  flags.DEFINE_integer("max_caption_len", _DEFAULTS.max_caption_len,
                       "Tokens per caption (longer ones are cut).")
  app.run(main)
