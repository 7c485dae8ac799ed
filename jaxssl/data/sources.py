"""Random-access data sources: `get_source(name, split, data_config)`.

Every source is a grain random-access source (`__len__`, `__getitem__(i) -> dict`) with
`num_classes`, `image_shape`, `class_names`, `name` and `split`, plus `get_batch(indices)`, which
the pipeline uses to read a whole batch with one fancy-index where the data sit in memory.
`__repr__` is stable (no object addresses): grain compares `repr(data_source)` when it restores
a checkpoint. Image sources' records are dict(image=uint8 (H, W, C), label=int32); clip sources'
are dict(video=uint8 (T, S, S, 3), audio=float32 (L,), text=int32 (K, Lt), label=int32, ...),
and they also carry `video_shape`, `audio_length`, `sample_rate`, `num_captions`,
`max_caption_len`, `vocab_size`, a `tokenizer` and `class_prompts(n)` (zero-shot prompts).

Sources:
  shapes         procedural, rendered on the fly (`jaxssl.data.shapes`); no files.
  digits         scikit-learn's 1797 8x8 digits; fixed seeded split, last 360 = test.
  fashion_mnist  IDX files from `data_dir`, default the Debian package's directory.
  idx            any MNIST-format IDX directory (`data_dir` required).
  tfds           any prepared TFDS dataset in array_record format, read without TensorFlow.
  avshapes       procedural video-audio-caption clips (`jaxssl.data.avshapes`); no files.
  av_records     clips converted from real video/audio/caption files by
                 `python -m jaxssl.data.convert` (`jaxssl.data.av_records`); needs data_dir.
"""
import gzip
import os
import struct
import zlib

import numpy as np

from jaxssl.data import CorruptRecord, av_records, avshapes, shapes

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# IDX type byte -> dtype (multi-byte types are big-endian).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_DIGITS_NUM_TEST = 360


class ArraySource:
  """Images and labels held in memory: datasets small enough to load whole (MNIST-sized)."""

  def __init__(self, name, split, images, labels, class_names, origin):
    if images.ndim == 3:  # Grayscale stored without a channel axis.
      images = images[..., None]
    self.name, self.split, self.origin = name, split, origin
    self.images, self.labels = images, labels.astype(np.int32)
    self.class_names = list(class_names)
    self.num_classes = len(self.class_names)
    self.image_shape = tuple(images.shape[1:])

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, index):
    return dict(image=self.images[index], label=self.labels[index])

  def get_batch(self, indices):
    return dict(image=self.images[indices], label=self.labels[indices])

  def __repr__(self):
    return (f"ArraySource(name={self.name!r}, split={self.split!r}, num_records={len(self)}, "
            f"image_shape={self.image_shape}, origin={self.origin!r})")


class ShapesSource:
  """The procedural shapes dataset; a record is a pure function of (seed, split, index)."""

  def __init__(self, split, num_records, seed, image_size):
    self.name, self.split = "shapes", split
    self.num_records, self.seed, self.image_size = num_records, seed, image_size
    self.class_names = list(shapes.CLASS_NAMES)
    self.num_classes = shapes.NUM_CLASSES
    self.image_shape = (image_size, image_size, 3)

  def __len__(self):
    return self.num_records

  def __getitem__(self, index):
    if not 0 <= index < self.num_records:
      raise IndexError(f"shapes/{self.split} has {self.num_records} records, asked for {index}")
    image, label = shapes.render(self.seed, self.split, int(index), self.image_size)
    return dict(image=image, label=np.int32(label))

  def get_batch(self, indices):
    records = [self[i] for i in indices]  # Rendering is per record by nature.
    return dict(image=np.stack([r["image"] for r in records]),
                label=np.array([r["label"] for r in records], np.int32))

  def __repr__(self):
    return (f"ShapesSource(split={self.split!r}, num_records={self.num_records}, "
            f"seed={self.seed}, image_size={self.image_size})")


class TfdsSource:
  """A prepared TFDS dataset through `tfds.data_source` (array_record; no TensorFlow needed).

  Wrapped because the tfds source's repr is not guaranteed stable and its records carry
  dataset-specific keys; here they become `dict(image, label)` like every other source.
  """

  def __init__(self, tfds_name, split, data_dir, image_key, label_key):
    import tensorflow_datasets as tfds  # Slow import; only this source needs it.
    self.name, self.split, self.data_dir = tfds_name, split, data_dir
    self.image_key, self.label_key = image_key, label_key
    try:
      self._source = tfds.data_source(tfds_name, split=split, data_dir=data_dir or None,
                                      download=False)
    except (ValueError, RuntimeError, AssertionError, OSError) as e:
      where = data_dir or "the default TFDS data_dir"
      first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise FileNotFoundError(
          f"TFDS dataset {tfds_name!r} split {split!r} is not readable from {where} "
          f"({first_line}); prepare it with file_format='array_record' (e.g. `tfds build "
          f"{tfds_name} --file_format=array_record`) or set --config.data.data_dir") from e
    features = self._source.dataset_info.features
    self.class_names = list(features[label_key].names)
    self.num_classes = features[label_key].num_classes
    self.image_shape = tuple(features[image_key].shape)
    if None in self.image_shape:
      raise ValueError(f"TFDS {tfds_name!r} has variable-size images {self.image_shape}; "
                       "only fixed-size image features are supported")

  def __len__(self):
    return len(self._source)

  def _convert(self, index, record):
    image = np.asarray(record[self.image_key], np.uint8)
    if image.shape != self.image_shape:
      raise CorruptRecord(f"{self.name}/{self.split}", index,
                          f"image {image.shape}, expected {self.image_shape}")
    return dict(image=image, label=np.int32(record[self.label_key]))

  def __getitem__(self, index):
    try:
      record = self._source[int(index)]
    except Exception as e:  # Decoding errors come in many types (proto, PNG/JPEG, ...).
      raise CorruptRecord(f"{self.name}/{self.split}", index,
                          f"{type(e).__name__}: {e}") from None
    return self._convert(index, record)

  def get_batch(self, indices):
    try:
      raw = self._source.__getitems__([int(i) for i in indices])
      records = [self._convert(i, r) for i, r in zip(indices, raw)]
    except Exception:  # Find the record that failed, one at a time, for a precise error.
      records = [self[i] for i in indices]
    return dict(image=np.stack([r["image"] for r in records]),
                label=np.array([r["label"] for r in records], np.int32))

  def __repr__(self):
    return (f"TfdsSource(name={self.name!r}, split={self.split!r}, data_dir={self.data_dir!r}, "
            f"image_key={self.image_key!r}, label_key={self.label_key!r})")


def read_idx(path):
  """Parses one IDX file (gzipped or not) into an array of the shape its header declares."""
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] == b"\x1f\x8b":
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
      raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from e
  if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
    raise ValueError(f"{path}: not an IDX file (magic number {raw[:4].hex()})")
  ndim, header = raw[3], 4 + 4 * raw[3]
  if len(raw) < header:
    raise ValueError(f"{path}: truncated IDX header")
  dims = struct.unpack(f">{ndim}I", raw[4:header])
  dtype = np.dtype(_IDX_DTYPES[raw[2]])
  expected = header + int(np.prod(dims)) * dtype.itemsize
  if len(raw) != expected:
    raise ValueError(f"{path}: {len(raw)} bytes where header shape {dims} needs {expected}; "
                     "the file is truncated or corrupt")
  return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def _find_idx(directory, base, hint):
  for path in (os.path.join(directory, base), os.path.join(directory, base + ".gz")):
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f"{os.path.join(directory, base)}[.gz] not found: {hint}")


def _idx_source(name, split, directory, class_names, hint):
  """MNIST-format directory -> ArraySource; class_names=None numbers the train labels' classes."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{name} directory {directory} not found: {hint}")
  image_file, label_file = (_find_idx(directory, base, hint) for base in _IDX_FILES[split])
  images, labels = read_idx(image_file), read_idx(label_file)
  if images.dtype != np.uint8 or images.ndim not in (3, 4) or labels.ndim != 1:
    raise ValueError(f"{image_file}, {label_file}: expected uint8 images (N, H, W[, C]) and "
                     f"labels (N,), got {images.dtype} {images.shape} and {labels.shape}")
  if len(images) != len(labels):
    raise ValueError(f"{image_file} has {len(images)} images but {label_file} has "
                     f"{len(labels)} labels")
  if class_names is None:  # Count classes on train so both splits agree.
    train_labels = labels if split == "train" else read_idx(
        _find_idx(directory, _IDX_FILES["train"][1], hint))
    class_names = [str(c) for c in range(int(train_labels.max()) + 1)]
  if labels.min() < 0 or labels.max() >= len(class_names):
    raise ValueError(f"{label_file}: labels outside [0, {len(class_names)})")
  return ArraySource(name, split, images, labels, class_names, origin=directory)


def _digits(split):
  """scikit-learn's digits, 0-16 scaled to 0-255, split by a fixed seeded permutation."""
  from sklearn.datasets import load_digits  # Only this source needs scikit-learn.
  digits = load_digits()
  images = np.round(digits.images * (255 / 16)).astype(np.uint8)
  perm = np.random.default_rng(0).permutation(len(images))
  keep = np.sort(perm[:-_DIGITS_NUM_TEST] if split == "train" else perm[-_DIGITS_NUM_TEST:])
  return ArraySource("digits", split, images[keep], digits.target[keep],
                     [str(c) for c in range(10)], origin="sklearn.datasets.load_digits")


def get_source(name: str, split: str, data_config):
  """Returns the `split` ('train' or 'test') source of dataset `name`; see module docstring.
  An empty one is refused: it could only fail later, inside the input pipeline."""
  source = _get_source(name, split, data_config)
  if len(source) == 0:
    raise ValueError(f"dataset {name!r} split {split!r} has no records; check "
                     "--config.data.data_dir (or data.num_train / data.num_test)")
  return source


def _get_source(name: str, split: str, data_config):
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")
  if name == "shapes":
    num = data_config.num_train if split == "train" else data_config.num_test
    return ShapesSource(split, num, data_config.seed, data_config.image_size)
  if name == "digits":
    return _digits(split)
  if name == "fashion_mnist":
    return _idx_source(name, split, data_config.data_dir or FASHION_MNIST_DIR,
                       FASHION_MNIST_CLASSES, "apt-get install dataset-fashion-mnist or set "
                       "--config.data.data_dir")
  if name == "idx":
    hint = ("set --config.data.data_dir to a directory with MNIST-format files "
            "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
    if not data_config.data_dir:
      raise FileNotFoundError(f"dataset 'idx' needs a data_dir: {hint}")
    return _idx_source(name, split, data_config.data_dir, None, hint)
  if name == "tfds":
    return TfdsSource(data_config.tfds_name, split, data_config.data_dir,
                      data_config.image_key, data_config.label_key)
  if name == "avshapes":
    return _check_vocab(avshapes.source_from_config(split, data_config), data_config)
  if name == "av_records":
    if not data_config.data_dir:
      raise FileNotFoundError("dataset 'av_records' needs --config.data.data_dir: a directory "
                              "written by `python -m jaxssl.data.convert`")
    return _check_vocab(av_records.AVRecordsSource(data_config.data_dir, split, data_config),
                        data_config)
  raise ValueError(f"unknown dataset {name!r}; expected shapes, digits, fashion_mnist, idx, "
                   "tfds, avshapes or av_records")


def _check_vocab(source, data_config):
  """A token id past a text encoder's table would be clipped silently by the embedding lookup."""
  wanted = data_config.get("vocab_size", 0)
  if wanted and wanted < source.vocab_size:
    raise ValueError(f"config.data.vocab_size={wanted} is smaller than {source.name}'s "
                     f"vocabulary ({source.vocab_size} ids); set --config.data.vocab_size="
                     f"{source.vocab_size}")
  return source


def describe(source) -> str:
  """One line for logs: name, split, size, record shapes, classes."""
  if hasattr(source, "video_shape"):
    shape = (f"video {source.video_shape}, audio {source.audio_length} @ {source.sample_rate} Hz, "
             f"{source.num_captions} captions x {source.max_caption_len} tokens "
             f"(vocabulary {source.vocab_size})")
  else:
    shape = f"image {source.image_shape}"
  return f"{source.name}/{source.split}: {len(source)} records, {shape}, {source.num_classes} classes"
