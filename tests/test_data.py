"""Tests of jaxssl.data: sources, the procedural shapes dataset and the step-indexed pipeline."""
import gzip
import io
import os
import struct

import grain
import ml_collections
import numpy as np
import PIL.Image
import pytest
from etils import epath

from jaxssl.data import CorruptRecord, pipeline, shapes, sources


def _config(**overrides):
  config = ml_collections.ConfigDict(dict(
      data_dir="", tfds_name="", image_key="image", label_key="label", num_train=600,
      num_test=100, seed=0, image_size=32))
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def digits():
  return sources.get_source("digits", "train", _config())


# --- shapes -------------------------------------------------------------------------------------


def test_shapes_is_a_pure_function_of_seed_split_index():
  image, label = shapes.render(3, "train", 17, 32)
  assert image.dtype == np.uint8 and image.shape == (32, 32, 3) and 0 <= label < 10
  again, label_again = shapes.render(3, "train", 17, 32)
  assert image.tobytes() == again.tobytes() and label == label_again
  assert image.tobytes() != shapes.render(4, "train", 17, 32)[0].tobytes()
  assert image.tobytes() != shapes.render(3, "test", 17, 32)[0].tobytes()
  assert image.tobytes() != shapes.render(3, "train", 18, 32)[0].tobytes()
  assert shapes.render(3, "train", 17, 48)[0].shape == (48, 48, 3)


def test_shapes_source_labels_cover_classes_and_splits_differ():
  train = sources.get_source("shapes", "train", _config())
  test = sources.get_source("shapes", "test", _config())
  assert (len(train), len(test)) == (600, 100)
  assert train.num_classes == 10 == len(train.class_names) and train.image_shape == (32, 32, 3)
  batch = train.get_batch(np.arange(600))
  assert batch["image"].shape == (600, 32, 32, 3) and batch["label"].dtype == np.int32
  counts = np.bincount(batch["label"], minlength=10)
  assert counts.min() >= 30 and counts.max() <= 90, counts  # 60 expected per class.
  record = train[5]
  assert record["image"].tobytes() == batch["image"][5].tobytes()
  assert record["label"] == batch["label"][5]
  assert test[5]["image"].tobytes() != record["image"].tobytes()
  # Images vary in their mean colour, i.e. the nuisances are really random.
  assert batch["image"].reshape(600, -1).mean(1).std() > 10
  with pytest.raises(IndexError):
    train[600]


def test_repr_is_stable():
  a, b = (sources.get_source("shapes", "train", _config()) for _ in range(2))
  assert repr(a) == repr(b) and "0x" not in repr(a)
  assert repr(a) != repr(sources.get_source("shapes", "train", _config(seed=1)))
  assert "shapes/train: 600 records" in sources.describe(a)


def test_avshapes_through_the_registry_and_the_pipeline():
  """Clip sources have no "image": video, audio and text pass through the pipeline as they are."""
  config = _config(num_train=40, num_test=10, num_frames=4, fps=8.0, sample_rate=4000,
                   num_captions=2, max_caption_len=20, vocab_size=0)
  train = sources.get_source("avshapes", "train", config)
  assert "avshapes/train: 40 records, video (4, 32, 32, 3), audio 2000 @ 4000 Hz, 2 captions x 20" \
      in sources.describe(train)
  whole = pipeline.train_dataset(train, global_batch=8, seed=0, image_size=32)[3]
  assert set(whole) == {"video", "audio", "text", "label", "motion", "index", "bad_records"}
  assert not whole["bad_records"].any()  # Procedural clips always decode.
  assert whole["video"].shape == (8, 4, 32, 32, 3) and whole["video"].dtype == np.uint8
  assert whole["audio"].shape == (8, 2000) and whole["audio"].dtype == np.float32
  assert whole["text"].shape == (8, 2, 20) and whole["text"].dtype == np.int32
  np.testing.assert_array_equal(whole["video"][2], train[int(whole["index"][2])]["video"])
  halves = [pipeline.train_dataset(train, global_batch=8, seed=0, image_size=32,
                                   process_index=i, process_count=2)[3] for i in range(2)]
  for key in whole:
    np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])
  arrays = pipeline.load_arrays(sources.get_source("avshapes", "test", config), image_size=32)
  assert set(arrays) == {"video", "audio", "text", "label", "motion"}
  assert arrays["video"].shape == (10, 4, 32, 32, 3) and arrays["label"].shape == (10,)
  with pytest.raises(ValueError, match="vocab_size=10 is smaller"):
    sources.get_source("avshapes", "train", _config(vocab_size=10))


# --- global batch indices and the training dataset ----------------------------------------------


def test_global_batch_indices_visit_every_record_once_per_epoch():
  # 10 records, batches of 4: 10 steps = 40 positions = 4 epochs, some batches span two.
  stream = np.concatenate([
      pipeline.global_batch_indices(s, global_batch=4, num_records=10, seed=7)
      for s in range(10)])
  assert stream.dtype == np.int64
  epochs = stream.reshape(4, 10)
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(10))
  assert len({tuple(e) for e in epochs}) > 1  # Epochs reshuffle.
  again = pipeline.global_batch_indices(3, global_batch=4, num_records=10, seed=7)
  np.testing.assert_array_equal(again, stream[12:16])
  other_seed = pipeline.global_batch_indices(3, global_batch=4, num_records=10, seed=8)
  assert not np.array_equal(again, other_seed)


def test_global_batch_indices_keep_groups_whole_and_in_order():
  # 12 records in groups of 3, batches of 6: each batch holds two whole groups, each epoch
  # visits every record once, and the groups' order reshuffles between epochs.
  kwargs = dict(global_batch=6, num_records=12, seed=7, group_size=3)
  stream = np.concatenate([pipeline.global_batch_indices(s, **kwargs) for s in range(8)])
  groups = stream.reshape(-1, 3)
  np.testing.assert_array_equal(groups % 3, np.tile(np.arange(3), (len(groups), 1)))
  np.testing.assert_array_equal(np.ptp(groups // 3, axis=1), 0)
  epochs = stream.reshape(4, 12)
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(12))
  assert len({tuple(e) for e in epochs}) > 1
  for bad in (dict(num_records=13), dict(global_batch=4)):
    with pytest.raises(ValueError, match="groups of 3"):
      pipeline.global_batch_indices(0, **{**kwargs, **bad})


def test_train_dataset_slices_are_independent_of_process_count(digits):
  kwargs = dict(global_batch=8, seed=3, image_size=32)
  whole = pipeline.train_dataset(digits, **kwargs)[5]
  assert whole["image"].shape == (8, 32, 32, 3) and whole["image"].dtype == np.uint8
  assert whole["label"].dtype == np.int32 and whole["index"].dtype == np.int64
  np.testing.assert_array_equal(
      whole["index"], pipeline.global_batch_indices(5, global_batch=8, num_records=len(digits),
                                                    seed=3))
  np.testing.assert_array_equal(whole["label"], digits.labels[whole["index"]])
  for count in (2, 4):
    parts = [pipeline.train_dataset(digits, process_index=i, process_count=count, **kwargs)[5]
             for i in range(count)]
    for key in ("image", "label", "index"):
      np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
  with pytest.raises(ValueError, match="divisible"):
    pipeline.train_dataset(digits, process_count=3, **kwargs)


def test_preprocess_resizes_and_makes_rgb():
  gray = np.full((2, 8, 8, 1), 200, np.uint8)
  out = pipeline.preprocess(gray, 32)
  assert out.shape == (2, 32, 32, 3) and (out == 200).all()  # Weights sum to one.
  ramp = np.broadcast_to(np.arange(0, 256, 8, dtype=np.uint8)[None, None, :, None],
                         (1, 32, 32, 3))
  np.testing.assert_array_equal(pipeline.preprocess(ramp, 32), ramp)  # Same size: untouched.
  small = pipeline.preprocess(np.ascontiguousarray(ramp), 16)[0, 0, :, 0].astype(int)
  assert (np.diff(small) > 0).all()  # Shrinking keeps the ramp monotonic.


# --- the checkpointable iterator ----------------------------------------------------------------


def _round_trip(dataset, tmp_path, num_workers):
  it = pipeline.train_iterator(dataset, start_step=2, num_workers=num_workers)
  first = [next(it)["index"] for _ in range(3)]
  handler = grain.checkpoint.CheckpointHandler()
  handler.save(epath.Path(tmp_path), args=grain.checkpoint.CheckpointSave(it))
  want = [next(it)["index"] for _ in range(2)]
  it.close()
  restored = pipeline.train_iterator(dataset, num_workers=num_workers)
  handler.restore(epath.Path(tmp_path), args=grain.checkpoint.CheckpointRestore(restored))
  assert restored.get_state() == {"next_step": 5}
  got = [next(restored)["index"] for _ in range(2)]
  restored.close()
  np.testing.assert_array_equal(first[0], dataset[2]["index"])
  np.testing.assert_array_equal(np.stack(got), np.stack(want))
  np.testing.assert_array_equal(want[0], dataset[5]["index"])


def test_iterator_state_round_trip_in_thread(digits, tmp_path):
  dataset = pipeline.train_dataset(digits, global_batch=16, seed=0, image_size=16)
  _round_trip(dataset, tmp_path, num_workers=0)
  it = pipeline.train_iterator(dataset)
  next(it)
  it.set_state({"next_step": 40})
  np.testing.assert_array_equal(next(it)["label"], dataset[40]["label"])
  it.close()


def test_iterator_state_round_trip_with_worker_process(digits, tmp_path):
  dataset = pipeline.train_dataset(digits, global_batch=16, seed=0, image_size=16)
  _round_trip(dataset, tmp_path, num_workers=1)


# --- file-backed sources ------------------------------------------------------------------------


def test_digits_split():
  train, test = (sources.get_source("digits", s, _config()) for s in ("train", "test"))
  assert (len(train), len(test)) == (1437, 360)
  assert train.image_shape == (8, 8, 1) and train.num_classes == 10
  assert train.images.max() == 255 and test[0]["label"].dtype == np.int32
  arrays = pipeline.load_arrays(test, image_size=32, max_examples=50)
  assert arrays["image"].shape == (50, 32, 32, 3) and arrays["label"].shape == (50,)
  np.testing.assert_array_equal(arrays["label"], test.labels[:50])


@pytest.mark.skipif(not os.path.isdir(sources.FASHION_MNIST_DIR),
                    reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist():
  test = sources.get_source("fashion_mnist", "test", _config())
  assert len(test) == 10000 and test.image_shape == (28, 28, 1)
  assert test.class_names[9] == "Ankle boot" and test.num_classes == 10
  assert np.bincount(test.labels).tolist() == [1000] * 10
  arrays = pipeline.load_arrays(test, image_size=32, max_examples=10)
  assert arrays["image"].shape == (10, 32, 32, 3)


def _write_idx(path, array, compress):
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape)
  data = header + array.astype(np.uint8).tobytes()
  with open(path, "wb") as f:
    f.write(gzip.compress(data) if compress else data)


def test_idx_reader(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (7, 5, 6), dtype=np.uint8)
  labels = np.array([0, 1, 2, 3, 0, 1, 2], np.uint8)
  _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, compress=True)
  _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels, compress=True)
  _write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:3], compress=False)
  _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:3], compress=False)
  config = _config(data_dir=str(tmp_path))
  train = sources.get_source("idx", "train", config)
  np.testing.assert_array_equal(train.images[..., 0], images)
  np.testing.assert_array_equal(train.labels, labels)
  assert train.num_classes == 4 and train.image_shape == (5, 6, 1)
  test = sources.get_source("idx", "test", config)
  assert len(test) == 3 and test.num_classes == 4
  assert pipeline.train_dataset(test, global_batch=4, seed=0, image_size=8)[0]["image"].shape == (
      4, 8, 8, 3)

  _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:2], compress=False)
  with pytest.raises(ValueError, match="3 images but"):
    sources.get_source("idx", "test", config)
  raw = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
  (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-5])
  with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*truncated"):
    sources.get_source("idx", "test", config)
  gz = (tmp_path / "train-images-idx3-ubyte.gz").read_bytes()
  (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gz[:len(gz) // 2])
  with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
    sources.get_source("idx", "train", config)


def test_missing_files_name_the_path_and_the_fix(tmp_path):
  missing = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere.*apt-get install dataset-fashion-mnist"):
    sources.get_source("fashion_mnist", "train", _config(data_dir=missing))
  with pytest.raises(FileNotFoundError, match="data_dir"):
    sources.get_source("idx", "train", _config())
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    sources.get_source("idx", "train", _config(data_dir=str(tmp_path)))
  with pytest.raises(ValueError, match="unknown dataset"):
    sources.get_source("cifar", "train", _config())


# --- TFDS ---------------------------------------------------------------------------------------


def _png(value):
  buf = io.BytesIO()
  PIL.Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


def test_tfds_source(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow to import)

  class JaxsslTinyImages(tfds.core.GeneratorBasedBuilder):
    """Ten 6x6 constant images, three classes; images PNG-encoded as tfds needs without TF."""
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "img": tfds.features.Image(shape=(6, 6, 3)),
          "cls": tfds.features.ClassLabel(names=["a", "b", "c"])}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(10), "test": self._generate_examples(4)}

    def _generate_examples(self, num):
      for i in range(num):
        yield i, {"img": _png(20 * i), "cls": i % 3}

  JaxsslTinyImages(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  config = _config(data_dir=str(tmp_path), tfds_name="jaxssl_tiny_images", image_key="img",
                   label_key="cls")
  source = sources.get_source("tfds", "train", config)
  assert len(source) == 10 and source.num_classes == 3 and source.class_names == ["a", "b", "c"]
  assert source.image_shape == (6, 6, 3) and "0x" not in repr(source)
  record = source[4]
  assert record["image"].dtype == np.uint8 and record["label"].dtype == np.int32
  # Every image is constant, value 20 * (its label's example index): decode is lossless.
  batch = source.get_batch(np.arange(10))
  assert sorted(batch["image"][:, 0, 0, 0].tolist()) == list(range(0, 200, 20))
  np.testing.assert_array_equal(batch["label"], batch["image"][:, 0, 0, 0] // 20 % 3)
  element = pipeline.train_dataset(source, global_batch=4, seed=0, image_size=8)[1]
  assert element["image"].shape == (4, 8, 8, 3)
  assert len(sources.get_source("tfds", "test", config)) == 4
  with pytest.raises(FileNotFoundError, match="not_a_dataset"):
    sources.get_source("tfds", "train", _config(data_dir=str(tmp_path), tfds_name="not_a_dataset"))
  # A record whose bytes do not parse: named, then skipped (replaced by the next one) or fatal.
  from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter
  (shard,) = (tmp_path / "jaxssl_tiny_images" / "1.0.0").glob("*train.array_record*")
  reader = ArrayRecordReader(str(shard))
  records = reader.read_all()
  reader.close()
  records[3] = b"\x00not a tf.Example"
  writer = ArrayRecordWriter(str(shard), "group_size:1")
  for r in records:
    writer.write(r)
  writer.close()
  source = sources.get_source("tfds", "train", config)
  with pytest.raises(CorruptRecord, match="record 3 of jaxssl_tiny_images/train is corrupt"):
    source.get_batch([2, 3])
  with pytest.raises(CorruptRecord, match="record 3"):
    pipeline.read_records(source, [3], "strict")
  batch, bad = pipeline.read_records(source, [2, 3], "skip")
  assert bad.tolist() == [False, True]
  np.testing.assert_array_equal(batch["image"][1], source[4]["image"])
