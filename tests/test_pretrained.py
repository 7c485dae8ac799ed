"""Using a finished run: jaxssl.load / embed, --mode=eval, export, init_from (issue #9)."""
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxssl
from configs import finetune, mmv
from jaxssl import export, pretrained, sharding, train
from jaxssl.data import pipeline, sources
from jaxssl.evaluators import knn, linear, retrieval

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow  # Each fixture below is a whole (quick) run.


def _train(config, workdir):
  mesh = sharding.make_mesh(dict(data=-1, fsdp=1, model=1))
  with jax.set_mesh(mesh):
    return train.train_and_evaluate(config, str(workdir), mesh)


@pytest.fixture(scope="module")
def simclr_run(simclr_quick_run):
  """(config, workdir, final.json) of the shared SimCLR quick run (tests/quick_runs.py)."""
  workdir = str(simclr_quick_run[0])
  final = json.load(open(os.path.join(workdir, "eval", "final.json")))
  return pretrained.read_config(workdir), workdir, final


@pytest.fixture(scope="module")
def mmv_run(tmp_path_factory):
  config = mmv.get_config("quick")
  config.eval.baselines = False
  workdir = tmp_path_factory.mktemp("mmv")
  return config, str(workdir), _train(config, workdir)


def _eval_arrays(config, split, num):
  return pipeline.load_arrays(sources.get_source(config.dataset, split, config.data),
                              image_size=config.data.image_size, max_examples=num)


def _cli(*args):
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_simclr_embed_reproduces_the_final_evaluation(simclr_run):
  config, workdir, final = simclr_run
  model = jaxssl.load(workdir)
  assert model.step == config.total_steps and model.modalities == ("image",)
  train_set = _eval_arrays(config, "train", config.eval.num_train)
  test_set = _eval_arrays(config, "test", config.eval.num_test)
  bank, queries = model.embed(train_set["image"]), model.embed(test_set["image"])
  assert queries.dtype == np.float32 and queries.shape[0] == len(test_set["image"])
  kw = dict(num_classes=10)
  assert knn.knn_top1(bank, train_set["label"], queries, test_set["label"], k=config.eval.knn_k,
                      temperature=config.eval.knn_temperature, **kw) == final["knn/top1"]
  assert linear.linear_top1(bank, train_set["label"], queries, test_set["label"],
                            steps=config.eval.linear_steps, **kw) == final["linear/top1"]
  # Float input in [0, 1] at another size goes through the same resize, unrounded.
  small = test_set["image"][:4, ::2, ::2].astype(np.float32) / 255
  assert model.embed(small).shape == queries[:4].shape


def test_mmv_embed_reproduces_the_final_retrieval(mmv_run):
  config, workdir, final = mmv_run
  model = jaxssl.load(workdir)
  test_set = _eval_arrays(config, "test", config.eval.num_test)
  captions = [model.tokenizer.decode(ids) for ids in test_set["text"][:, 0]]
  text = model.embed(captions, modality="text")
  video_vat = model.embed(test_set["video"], output="video_vat")
  audio = model.embed(test_set["audio"], output="audio_va")
  video_va = model.embed(test_set["video"], modality="video", output="video_va")
  assert retrieval.summary("t2v", retrieval.ranks(text, video_vat))["t2v/R@1"] == final["t2v/R@1"]
  assert retrieval.summary("a2v", retrieval.ranks(audio, video_va))["a2v/R@5"] == final["a2v/R@5"]
  train_set = _eval_arrays(config, "train", config.eval.num_train)
  probe = linear.linear_top1(model.embed(train_set["video"]), train_set["label"],
                             model.embed(test_set["video"]), test_set["label"], num_classes=10,
                             steps=config.eval.linear_steps)
  assert probe == final["linear/video/top1"]


def test_mode_eval_rewrites_the_same_final_json(simclr_run, tmp_path):
  _, shared, final = simclr_run
  workdir = str(tmp_path / "run")
  shutil.copytree(shared, workdir)
  os.remove(os.path.join(workdir, "eval", "final.json"))
  # No --config: the workdir's own config.json is used.
  run = _cli("-m", "jaxssl.main", f"--workdir={workdir}", "--mode=eval", "--eval_step=all")
  assert run.returncode == 0, run.stderr[-2000:]
  assert json.load(open(os.path.join(workdir, "eval", "final.json"))) == final
  steps = sorted(f for f in os.listdir(os.path.join(workdir, "eval")) if f.startswith("step_"))
  assert steps == ["step_16.json", "step_20.json", "step_24.json"]
  assert json.load(open(os.path.join(workdir, "eval", "step_24.json"))) == final


def test_export_and_workdir_reload_in_a_fresh_one_device_process(simclr_run, mmv_run, tmp_path):
  (_, simclr_dir, _), (mmv_config, mmv_dir, _) = simclr_run, mmv_run
  images = np.random.default_rng(0).integers(0, 256, (5, 20, 20, 3), np.uint8)
  clips = _eval_arrays(mmv_config, "test", 6)
  captions = ["a big red circle moves left", "a small square bounces"]
  np.savez(tmp_path / "inputs.npz", images=images, video=clips["video"], audio=clips["audio"])
  for name, workdir in (("simclr", simclr_dir), ("mmv", mmv_dir)):
    export.main([f"--workdir={workdir}", f"--out={tmp_path / name}"])
  meta = json.load(open(tmp_path / "mmv" / "model.json"))
  assert meta["method"] == "mmv" and meta["embeddings"]["text"] == {"text_vat": 8}
  script = f"""
import sys, numpy as np, jaxssl
x = np.load({str(tmp_path / "inputs.npz")!r})
s, m = jaxssl.load({str(tmp_path / "simclr")!r}), jaxssl.load({str(tmp_path / "mmv")!r})
w = jaxssl.load({mmv_dir!r})  # trained on 8 devices, loaded on 1
np.savez({str(tmp_path / "out.npz")!r}, image=s.embed(x["images"]), video=m.embed(x["video"]),
         audio=m.embed(x["audio"]), text=m.embed({captions!r}), workdir_video=w.embed(x["video"]))
"""
  run = _cli("-c", script)
  assert run.returncode == 0, run.stderr[-2000:]
  out = np.load(tmp_path / "out.npz")
  # The fresh process has one CPU device, this one 8: the same weights, float32 rounding apart
  # (XLA blocks a batch of 5 and a per-device batch of 1 differently).
  mine, theirs = jaxssl.load(simclr_dir), jaxssl.load(mmv_dir)
  close = dict(rtol=1e-5, atol=1e-6)
  # YNNPACK's convolutions (cpu_ynnpack) also sum in an order that depends on the batch's size:
  # measured up to 2.5e-5 relative on the ResNet's features.
  np.testing.assert_allclose(out["image"], mine.embed(images), rtol=1e-4, atol=1e-5)
  # The clip towers amplify that rounding (per-image standardisation divides by each frame's
  # std, the log-mel takes logs of small energies): measured up to 1e-4 relative.
  for modality in ("video", "audio"):
    expected = theirs.embed(clips[modality])
    np.testing.assert_allclose(out[modality], expected, rtol=2e-4,
                               atol=1e-4 * np.abs(expected).max())
  np.testing.assert_allclose(out["text"], theirs.embed(captions), **close)
  assert np.array_equal(out["workdir_video"], out["video"])
  with pytest.raises(FileExistsError, match="exists"):
    export.export(simclr_dir, str(tmp_path / "simclr"))


def test_bad_paths_and_inputs_give_one_line_errors(simclr_run, tmp_path):
  _, workdir, _ = simclr_run
  with pytest.raises(FileNotFoundError, match="does not exist: expected a jaxssl workdir"):
    jaxssl.load(str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="neither a jaxssl workdir"):
    jaxssl.load(str(tmp_path))
  (tmp_path / "config.json").write_text(open(os.path.join(workdir, "config.json")).read())
  with pytest.raises(FileNotFoundError, match="no checkpoint under"):
    jaxssl.load(str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 4 .* steps \[16, 20, 24\]"):
    jaxssl.load(workdir, step=4)
  model = jaxssl.load(workdir, step=16)
  assert model.step == 16
  with pytest.raises(ValueError, match="embeds image; not 'audio'"):
    model.embed(np.zeros((2, 800), np.float32), modality="audio")
  with pytest.raises(ValueError, match=r"expected \(N, H, W, C\)"):
    model.embed(np.zeros((2, 16, 16), np.uint8))
  with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
    model.embed(np.full((2, 16, 16, 3), 255.0, np.float32))
  for args in (("-m", "jaxssl.main", f"--workdir={tmp_path / 'nowhere'}", "--mode=eval"),
               ("-m", "jaxssl.export", f"--workdir={workdir}", f"--out={workdir}")):
    run = _cli(*args)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), run.stderr


def test_linear_probe_from_an_export_keeps_the_encoder(simclr_run, tmp_path):
  _, workdir, _ = simclr_run
  exported = export.export(workdir, str(tmp_path / "export"))
  config = finetune.get_config("linear,quick")
  config.init_from = exported
  final = _train(config, tmp_path / "probe")
  assert 0.0 <= final["classifier/top1"] <= 1.0
  # Frozen: the encoder's params and BatchNorm statistics end exactly as pretrained.
  _, pre = pretrained.load_variables(workdir)
  _, post = pretrained.load_variables(str(tmp_path / "probe"))
  same = jax.tree.map(np.array_equal, pre["params"]["encoder"], post["params"]["encoder"])
  assert all(jax.tree.leaves(same))
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, pre["model_state"]["batch_stats"]["encoder"],
                                          post["model_state"]["batch_stats"]["encoder"])))
  # Another encoder size cannot take these weights: refused, naming the parameter.
  config = finetune.get_config("quick")
  config.model.width, config.init_from = 4, workdir
  with pytest.raises(ValueError, match=r"init_from=.*encoder.* has shape"):
    _train(config, tmp_path / "other")


def test_init_from_copies_every_shared_encoder_of_a_multimodal_run(mmv_run):
  # A video-text run (MIL-NCE: video_encoder, text_encoder, its own heads) from an MMV run:
  # both encoders come over, statistics included; the heads and other collections stay.
  _, workdir, _ = mmv_run
  _, source = pretrained.load_variables(workdir)
  fresh = lambda tree: jax.tree.map(lambda x: np.full_like(x, 7), tree)  # noqa: E731
  params = {k: fresh(source["params"][k]) for k in ("video_encoder", "text_encoder")}
  params["video_to_vt"] = {"kernel": np.ones((3, 2), np.float32)}
  stats = {"video_encoder": fresh(source["model_state"]["batch_stats"]["video_encoder"]),
           "video_to_vt": {"mean": np.ones(2, np.float32)}}
  state = {"step": 0, "params": params, "model_state": {"batch_stats": stats}}
  mesh = sharding.make_mesh(dict(data=-1, fsdp=1, model=1))
  loaded = jax.device_get(train._load_encoders(state, workdir, sharding.replicated(mesh)))
  for name in ("video_encoder", "text_encoder"):
    same = jax.tree.map(np.array_equal, source["params"][name], loaded["params"][name])
    assert all(jax.tree.leaves(same)), name
  same = jax.tree.map(np.array_equal, source["model_state"]["batch_stats"]["video_encoder"],
                      loaded["model_state"]["batch_stats"]["video_encoder"])
  assert all(jax.tree.leaves(same))
  assert np.all(loaded["params"]["video_to_vt"]["kernel"] == 1)
  assert np.all(loaded["model_state"]["batch_stats"]["video_to_vt"]["mean"] == 1)
