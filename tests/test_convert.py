"""Real-file path: mp4/webm + wav + JSONL/CSV manifest -> `python -m jaxssl.data.convert` ->
ArrayRecord -> the `av_records` grain source -> a few training steps. Every file is written here."""
import json
import os
import subprocess
import sys
import wave

import av
import numpy as np
import pytest

from jaxssl import config_base, reporting
from jaxssl.data import CorruptRecord, av_records, convert, pipeline, sources
from quick_runs import train_on_one_device

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The clip geometry of configs/mmv.py:quick, so the converted clips train with it unchanged.
GEOMETRY = dict(num_frames=4, fps=8.0, image_size=16, sample_rate=4000, num_captions=3,
                max_caption_len=20)


def _frame_value(k):
  return 20 + 10 * k  # Frame k of every test video is uniformly this grey.


def write_video(path, codec, seconds=2.0, fps=10, size=(48, 32), tone_hz=None):
  """A video whose frame k is grey _frame_value(k); with tone_hz, an AAC sine track too."""
  with av.open(str(path), "w") as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    audio = None
    if tone_hz:
      audio = container.add_stream("aac", rate=16000)
      audio.layout = "mono"
    for k in range(int(seconds * fps)):
      image = np.full((size[1], size[0], 3), _frame_value(k), np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
    if audio is not None:
      t = np.arange(int(seconds * 16000)) / 16000
      samples = (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)[None]
      frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
      frame.sample_rate = 16000
      for packet in audio.encode(frame):
        container.mux(packet)
      for packet in audio.encode():
        container.mux(packet)


def write_wav(path, tone_hz, rate=22050, seconds=2.0, channels=2):
  t = np.arange(int(rate * seconds)) / rate
  x = (0.4 * 32767 * np.sin(2 * np.pi * tone_hz * t)).astype("<i2")
  with wave.open(str(path), "wb") as w:
    w.setnchannels(channels)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes(np.repeat(x[:, None], channels, 1).tobytes())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("clips")
  write_video(d / "a.mp4", "mpeg4", tone_hz=1000)
  write_video(d / "b.webm", "libvpx-vp9")
  write_wav(d / "b.wav", 440)
  rows = [dict(video="a.mp4", captions=["a grey square fades in", "it gets brighter"],
               label="fade", split="train"),
          dict(video="b.webm", audio="b.wav", caption="a tone plays", label="tone"),
          dict(video="a.mp4", captions=["later part"], label="fade", start=0.5),
          dict(video="b.webm", audio="b.wav", captions=["a held out tone"], label="tone",
               split="test"),
          dict(video="a.mp4", captions=["a held out fade"], label="fade", split="test")]
  with open(d / "clips.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  return d


def _peak_hz(audio, rate):
  spectrum = np.abs(np.fft.rfft(audio))
  return np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)]


def test_convert_and_read_back(files, tmp_path):
  meta = convert.convert(str(files / "clips.jsonl"), str(tmp_path), records_per_shard=2,
                         **GEOMETRY)
  assert meta["splits"]["train"]["num_records"] == 3 and len(meta["splits"]["train"]["files"]) == 2
  assert meta["class_names"] == ["fade", "tone"]
  assert "held" not in meta["vocabulary"]  # Test captions do not make the vocabulary.
  config = config_base.base_config().data
  config.update(GEOMETRY, data_dir=str(tmp_path))
  train_source = sources.get_source("av_records", "train", config)
  test_source = sources.get_source("av_records", "test", config)
  assert len(train_source) == 3 and len(test_source) == 2 and train_source.num_classes == 2
  assert "av_records/train: 3 records, video (4, 16, 16, 3), audio 2000" in sources.describe(
      train_source)
  assert repr(train_source) == repr(av_records.AVRecordsSource(str(tmp_path), "train"))

  a, b, late = (train_source[i] for i in range(3))
  assert a["video"].shape == (4, 16, 16, 3) and a["video"].dtype == np.uint8
  assert a["audio"].shape == (2000,) and a["audio"].dtype == np.float32
  assert a["text"].shape == (3, 20) and a["text"].dtype == np.int32
  # Frames at 8 fps from a 10 fps file: the frame shown at 0, 1/8, 2/8, 3/8 s is 0, 1, 2, 3;
  # from start=0.5 s it is 5, 6, 7, 8 (grey levels within codec error).
  np.testing.assert_allclose(a["video"].mean((1, 2, 3)), [_frame_value(k) for k in range(4)],
                             atol=4)
  np.testing.assert_allclose(late["video"].mean((1, 2, 3)),
                             [_frame_value(k) for k in (5, 6, 7, 8)], atol=4)
  assert abs(_peak_hz(a["audio"], 4000) - 1000) < 10  # From the mp4's AAC track.
  assert abs(_peak_hz(b["audio"], 4000) - 440) < 10  # From the wav, 22.05 kHz stereo.
  # Captions repeat cyclically up to K; labels index the sorted class names.
  decode = train_source.tokenizer.decode
  assert [decode(t) for t in a["text"]] == ["a grey square fades in", "it gets brighter",
                                            "a grey square fades in"]
  assert [decode(t) for t in b["text"]] == ["a tone plays"] * 3
  assert (int(a["label"]), int(b["label"])) == (0, 1)
  assert decode(test_source[0]["text"][0]) == "a <unk> <unk> tone"  # "held out": unseen words.
  assert test_source.class_prompts(2) == [["fade", "a fade"], ["tone", "a tone"]]

  batch = pipeline.train_dataset(train_source, global_batch=4, seed=0, image_size=16)[0]
  assert batch["video"].shape == (4, 4, 16, 16, 3) and batch["text"].shape == (4, 3, 20)
  arrays = pipeline.load_arrays(test_source, image_size=16)
  assert set(arrays) == {"video", "audio", "text", "label"} and len(arrays["label"]) == 2


def test_csv_manifest_and_command_line(files, tmp_path):
  with open(files / "clips.csv", "w") as f:
    f.write("video,audio,caption,label\nb.webm,b.wav,one | two,x\na.mp4,,three,y\n")
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-m", "jaxssl.data.convert", f"--manifest={files / 'clips.csv'}",
       f"--output={out}", "--num_frames=2", "--image_size=8"], cwd=REPO, capture_output=True,
      text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "wrote train: 2 clips" in result.stdout
  meta = json.load(open(out / "metadata.json"))
  assert meta["num_frames"] == 2 and meta["image_size"] == 8 and meta["class_names"] == ["x", "y"]
  source = av_records.AVRecordsSource(str(out), "train")
  assert [source.tokenizer.decode(t) for t in source[0]["text"]] == ["one", "two", "one"]


def test_bad_inputs_name_the_file(files, tmp_path):
  def manifest(rows, name="m.jsonl"):
    path = files / name
    with open(path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)

  with pytest.raises(FileNotFoundError, match="missing.mp4"):
    convert.convert(manifest([dict(video="missing.mp4", caption="x")]), str(tmp_path / "1"))
  (files / "corrupt.mp4").write_bytes(b"\x00not a video" * 100)
  with pytest.raises(ValueError, match=r"row 1: cannot read .*corrupt.mp4"):
    convert.convert(manifest([dict(video="corrupt.mp4", caption="x")]), str(tmp_path / "2"))
  with pytest.raises(ValueError, match=r"cannot read .*b.webm.*no audio stream"):
    convert.convert(manifest([dict(video="b.webm", caption="x")]), str(tmp_path / "3"))
  (files / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
  with pytest.raises(ValueError, match="cannot read .*bad.wav"):
    convert.convert(manifest([dict(video="b.webm", audio="bad.wav", caption="x")]),
                    str(tmp_path / "4"))
  with pytest.raises(ValueError, match="at least one caption"):
    convert.convert(manifest([dict(video="a.mp4", captions=[])]), str(tmp_path / "5"))
  with pytest.raises(ValueError, match="every row or on none"):
    convert.convert(manifest([dict(video="a.mp4", caption="x", label="l"),
                              dict(video="a.mp4", caption="y")]), str(tmp_path / "6"))
  # Reading: the wrong geometry, a missing directory, a vocabulary too small for the data.
  convert.convert(manifest([dict(video="a.mp4", caption="x y z")]), str(tmp_path / "ok"),
                  **GEOMETRY)
  config = config_base.base_config().data
  config.update(GEOMETRY, data_dir=str(tmp_path / "ok"))
  config.image_size = 32
  with pytest.raises(ValueError, match="data.image_size=32 but the data have 16"):
    sources.get_source("av_records", "train", config)
  config.image_size, config.vocab_size = 16, 3
  with pytest.raises(ValueError, match="vocab_size=5"):
    sources.get_source("av_records", "train", config)
  with pytest.raises(ValueError, match="no split 'test'"):
    av_records.AVRecordsSource(str(tmp_path / "ok"), "test")
  with pytest.raises(FileNotFoundError, match="metadata.json not found"):
    av_records.AVRecordsSource(str(tmp_path / "nowhere"), "train")


def _replace_record(data_dir, split, index, payload):
  """Rewrites the shard holding record `index` of `split` with `payload` in its place."""
  from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter
  meta = av_records.read_metadata(str(data_dir))
  (name,) = meta["splits"][split]["files"]  # One shard (records_per_shard default).
  path = os.path.join(data_dir, name)
  reader = ArrayRecordReader(path)
  records = reader.read_all()
  reader.close()
  records[index] = payload
  writer = ArrayRecordWriter(path, "group_size:1")
  for record in records:
    writer.write(record)
  writer.close()


def test_corrupt_records_are_named_then_skipped_or_fatal(files, tmp_path):
  convert.convert(str(files / "clips.jsonl"), str(tmp_path), **GEOMETRY)
  good = av_records.AVRecordsSource(str(tmp_path), "train")[2]
  _replace_record(tmp_path, "train", 0, b"\x00garbage")
  wrong_shape = av_records.encode_record(good["video"][:2], good["audio"], good["text"], 0)
  _replace_record(tmp_path, "train", 1, wrong_shape)
  source = av_records.AVRecordsSource(str(tmp_path), "train")
  with pytest.raises(CorruptRecord, match="record 0 of av_records/train is corrupt: not an .npz archive"):
    source[0]
  with pytest.raises(CorruptRecord, match=r"record 1 .* video \(2, 16, 16, 3\) \(expected \(4,"):
    source.get_batch([2, 1])
  with pytest.raises(CorruptRecord, match="record 0"):
    pipeline.read_records(source, [2, 0], "strict")
  # skip: each corrupt record is replaced by the next one that decodes (index 2 here).
  batch, bad = pipeline.read_records(source, [2, 0, 1], "skip")
  assert bad.tolist() == [False, True, True]
  for k in batch:
    assert all(np.array_equal(batch[k][i], good[k]) for i in range(3)), k
  assert len(pipeline.load_arrays(source, image_size=16)["video"]) == 1  # Eval drops them.


@pytest.mark.slow
def test_mmv_trains_a_few_steps_on_converted_files(files, tmp_path):
  """The acceptance check of the real-file path: configs/mmv.py:quick on converted clips, one
  of which is corrupt: it is skipped and the count logged."""
  from configs import mmv as mmv_config
  data_dir = tmp_path / "records"
  convert.convert(str(files / "clips.jsonl"), str(data_dir), **GEOMETRY)
  _replace_record(data_dir, "train", 1, b"\x00garbage")
  config = mmv_config.get_config("quick")
  config.dataset, config.data.data_dir = "av_records", str(data_dir)
  config.total_steps, config.log_every, config.ckpt_every = 3, 1, 3
  config.eval.baselines = False
  final = train_on_one_device(config, tmp_path / "run")
  for key in ("t2v/R@1", "v2t/R@1", "a2v/R@1", "zeroshot/top1", "linear/video/top1",
              "linear/audio/top1"):
    assert 0.0 <= final[key] <= 1.0, key
  assert (tmp_path / "run" / "plots" / "retrievals.png").exists()
  logged = [r.get("bad_records", 0) for r in reporting.read_jsonl(tmp_path / "run" / "metrics.jsonl")]
  assert logged[0] > 0 and logged == sorted(logged)  # A running count, one per replaced record.
