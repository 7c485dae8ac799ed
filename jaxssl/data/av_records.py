"""Clips converted from real files (`python -m jaxssl.data.convert`), read back through grain.

A converted directory holds
  metadata.json   {"format", "num_frames", "fps", "image_size", "sample_rate", "num_captions",
                  "max_caption_len", "vocabulary": [words], "class_names": [names],
                  "splits": {split: {"num_records": N, "files": [shard file names]}}}
  <split>-<i>-of-<n>.array_record   one record per clip: an uncompressed .npz (no pickles) of
                  video uint8 (T, S, S, 3), audio float32 (L,), text int32 (K, Lt), label int32
                  (-1 where the manifest had no labels)
so a record is already in the batch format of `avshapes` and needs no decoding work in the input
pipeline beyond reading the arrays.
"""
import io
import json
import os

import numpy as np

from jaxssl.data import CorruptRecord, text

FORMAT = "jaxssl.av_records/1"
METADATA = "metadata.json"
# The clip geometry a training config must share with the converted data.
GEOMETRY = ("num_frames", "fps", "image_size", "sample_rate", "num_captions", "max_caption_len")
_FIELDS = ("video", "audio", "text", "label")
# Zero-shot prompts from a class name (real data has no caption grammar to sample from).
_PROMPT_TEMPLATES = ("{}", "a {}", "a video of {}", "a clip of {}", "there is {}", "we see {}")


def encode_record(video, audio, tokens, label) -> bytes:
  buffer = io.BytesIO()
  np.savez(buffer, video=np.asarray(video, np.uint8), audio=np.asarray(audio, np.float32),
           text=np.asarray(tokens, np.int32), label=np.int32(label))
  return buffer.getvalue()


def decode_record(raw: bytes) -> dict:
  with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
    return {k: arrays[k] for k in _FIELDS}


def _record_shapes(meta) -> dict:
  s, t = meta["image_size"], meta["num_frames"]
  return dict(video=(t, s, s, 3), audio=(int(round(t / meta["fps"] * meta["sample_rate"])),),
              text=(meta["num_captions"], meta["max_caption_len"]), label=())


def read_metadata(data_dir) -> dict:
  path = os.path.join(data_dir, METADATA)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: set --config.data.data_dir to a directory "
                            "written by `python -m jaxssl.data.convert`")
  with open(path) as f:
    meta = json.load(f)
  if meta.get("format") != FORMAT:
    raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}; reconvert it")
  return meta


class AVRecordsSource:
  """Grain random-access source over the ArrayRecord shards of one split.

  data_config: the run's `config.data` (a mapping); its clip geometry must equal the converted
  one, since records are stored at their final shape.
  """

  def __init__(self, data_dir, split, data_config=None):
    from grain.sources import ArrayRecordDataSource  # Keeps `import jaxssl.data` light.
    meta = read_metadata(data_dir)
    if split not in meta["splits"]:
      raise ValueError(f"{data_dir} has no split {split!r}, only {sorted(meta['splits'])}; "
                       "give the manifest rows a 'split' field and convert again")
    if data_config is not None:
      wrong = [f"data.{k}={data_config[k]!r} but the data have {meta[k]!r}" for k in GEOMETRY
               if k in data_config and data_config[k] != meta[k]]
      if wrong:
        raise ValueError(f"{data_dir} was converted with another clip geometry: "
                         f"{'; '.join(wrong)}. Set those --config.data.* values or convert again.")
    self.name, self.split, self.data_dir = "av_records", split, data_dir
    for key in GEOMETRY:
      setattr(self, key, meta[key])
    self.class_names = list(meta["class_names"])
    self.num_classes = len(self.class_names)
    self.tokenizer = text.WordTokenizer(meta["vocabulary"])
    self.vocab_size = self.tokenizer.vocab_size
    self.image_shape = (self.image_size, self.image_size, 3)
    self.video_shape = (self.num_frames,) + self.image_shape
    self.audio_length = int(round(self.num_frames / self.fps * self.sample_rate))
    paths = [os.path.join(data_dir, f) for f in meta["splits"][split]["files"]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      raise FileNotFoundError(f"{data_dir}: shard files listed in {METADATA} are missing: "
                              f"{missing[:3]}")
    self._records = ArrayRecordDataSource(paths)
    self._shapes = _record_shapes(meta)
    if len(self._records) != meta["splits"][split]["num_records"]:
      raise ValueError(f"{data_dir}: {split} shards hold {len(self._records)} records, "
                       f"{METADATA} says {meta['splits'][split]['num_records']}")

  def __len__(self):
    return len(self._records)

  def _decode(self, index, raw):
    """The record's arrays, or CorruptRecord if they do not parse or have the wrong shapes."""
    if not raw.startswith(b"PK"):  # np.load would take any other bytes for a pickle.
      raise CorruptRecord(f"av_records/{self.split}", index, "not an .npz archive")
    try:
      record = decode_record(raw)
    except Exception as e:  # zipfile, numpy and key errors all mean the same: unreadable bytes.
      raise CorruptRecord(f"av_records/{self.split}", index, f"{type(e).__name__}: {e}") from None
    wrong = [f"{k} {record[k].shape} (expected {shape})" for k, shape in self._shapes.items()
             if record[k].shape != shape]
    if wrong:
      raise CorruptRecord(f"av_records/{self.split}", index, ", ".join(wrong))
    return record

  def __getitem__(self, index):
    return self._decode(int(index), self._records[int(index)])

  def get_batch(self, indices):
    indices = [int(i) for i in indices]
    records = [self._decode(i, r) for i, r in zip(indices, self._records.__getitems__(indices))]
    return {k: np.stack([r[k] for r in records]) for k in _FIELDS}

  def class_prompts(self, num_per_class):
    return [[t.format(name) for t in _PROMPT_TEMPLATES[:num_per_class]]
            for name in self.class_names]

  def __repr__(self):
    return f"AVRecordsSource(data_dir={self.data_dir!r}, split={self.split!r})"
