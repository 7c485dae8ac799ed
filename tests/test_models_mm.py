"""Multimodal encoders: TSM-ResNet video, log-mel audio, word-embedding text head."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.models import audio, resnet, text, video

# ---- video ---------------------------------------------------------------------------------


def test_temporal_shift_moves_an_eighth_of_the_channels_each_way():
  b, t, c = 2, 3, 16
  x = np.random.default_rng(0).normal(size=(b * t, 2, 2, c)).astype(np.float32)
  got = np.asarray(resnet.temporal_shift(jnp.asarray(x), t)).reshape(b, t, 2, 2, c)
  clips = x.reshape(b, t, 2, 2, c)
  want = np.zeros_like(clips)
  for i in range(t):  # Channels 0-1 come from frame i + 1, 2-3 from frame i - 1, 4+ stay.
    if i + 1 < t:
      want[:, i, ..., :2] = clips[:, i + 1, ..., :2]
    if i > 0:
      want[:, i, ..., 2:4] = clips[:, i - 1, ..., 2:4]
    want[:, i, ..., 4:] = clips[:, i, ..., 4:]
  np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def tiny_video():
  enc = video.VideoEncoder(depth=10, width=8, stem="small")
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 16, 16, 3)), jnp.float32)
  # Under jit: eager init compiles every op on its own, ~5x slower on 2 cores.
  variables = nn.unbox(jax.jit(lambda k, x: enc.init(k, x, train=False))(jax.random.key(0), x))
  # Residual branches start switched off (zero last BatchNorm scales), and with them the
  # temporal shift: give every BatchNorm a unit scale, as training soon does.
  variables = jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.ones_like(p) if path[-1].key == "scale" else p, variables)
  return enc, variables, x


def test_video_encoder_shapes_and_any_clip_length(tiny_video):
  enc, variables, x = tiny_video
  apply = jax.jit(lambda v, x: enc.apply(v, x, train=False))
  assert apply(variables, x).shape == (2, resnet.feature_dim(10, 8))
  assert apply(variables, x[:, :2]).shape == (2, 64)  # The same parameters for 2 frames.
  out, state = enc.apply(variables, x, train=True, mutable=["batch_stats"])
  assert out.shape == (2, 64) and "batch_stats" in state


def test_video_encoder_mixes_frames_within_a_clip_only(tiny_video):
  enc, variables, x = tiny_video
  apply = jax.jit(lambda v, x: enc.apply(v, x, train=False))
  base = np.asarray(apply(variables, x))
  # Reversing time changes a TSM clip's features (a per-frame ResNet + mean would not notice)...
  reversed_time = np.asarray(apply(variables, x[:, ::-1]))
  assert np.abs(reversed_time - base).max() > 1e-4 * np.abs(base).max()
  # ... but no information flows between clips.
  other = np.asarray(apply(variables, x.at[1].set(0.0)))
  np.testing.assert_allclose(other[0], base[0], rtol=1e-5, atol=1e-6)


def test_3d_stem_is_a_conv_over_neighbouring_frames_with_nn_conv_gradients():
  enc = video.VideoEncoder(depth=10, width=8, stem="small", stem_frames=3)
  x = jax.random.uniform(jax.random.key(1), (2, 4, 16, 16, 3))
  variables = nn.unbox(enc.init(jax.random.key(0), x, train=False))
  kernel = variables["params"]["tsm_resnet"]["stem_conv"]["kernel"]
  assert kernel.shape == (3, 3, 3, 3, 8)  # (time, height, width, in, out)
  # Its output at frame t is the numpy sum over frames t-1..t+1 (zero past the clip's ends).
  _, state = enc.apply(variables, x, train=False, capture_intermediates=True)
  (got,) = state["intermediates"]["tsm_resnet"]["stem_conv"]["__call__"]
  got = np.asarray(got).reshape(2, 4, 8, 8, 8)
  padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0)))
  want = np.zeros_like(got)
  for dt in range(3):
    for dy in range(3):
      for dx in range(3):
        window = padded[:, dt:dt + 4, dy:dy + 16:2, dx:dx + 16:2]
        want += window @ np.asarray(kernel[dt, dy, dx])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  # It runs as a 2D conv over stacked frames (resnet.FrameStackConv); its gradients are those
  # of flax's 3D conv with the same kernel.
  stem = resnet.FrameStackConv(8, 3, 2, time=3, num_frames=4)
  conv3d = nn.Conv(8, (3, 3, 3), strides=(1, 2, 2), padding=[(1, 1)] * 3, use_bias=False)
  frames = x.reshape(8, 16, 16, 3)
  losses = (lambda k, f: jnp.sum(jnp.sin(stem.apply({"params": {"kernel": k}}, f))),
            lambda k, f: jnp.sum(jnp.sin(conv3d.apply({"params": {"kernel": k}},
                                                      f.reshape(2, 4, 16, 16, 3)))))
  got, want = (jax.grad(loss, (0, 1))(kernel, frames) for loss in losses)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * np.abs(w).max())
  with pytest.raises(ValueError, match="stem_frames=3 needs clips"):
    resnet.ResNet(10, 8, "small", stem_frames=3)


@pytest.mark.parametrize("num_frames", [4, 6])
def test_3d_stem_time_stride_is_nn_conv_strided_in_time(num_frames):
  # Output frame j is centred on input frame 2j, as flax's 3D conv strided 2 in time with
  # padding 1 (so frames 2j - 1 .. 2j + 1: every input frame is seen), values and gradients.
  x = jax.random.uniform(jax.random.key(1), (2 * num_frames, 16, 16, 3))
  kernel = jax.random.normal(jax.random.key(2), (3, 3, 3, 3, 8))
  stem = resnet.FrameStackConv(8, 3, 2, time=3, num_frames=num_frames, time_strides=2)
  conv3d = nn.Conv(8, (3, 3, 3), strides=(2, 2, 2), padding=[(1, 1)] * 3, use_bias=False)
  ours = lambda k, f: stem.apply({"params": {"kernel": k}}, f)
  flax3d = lambda k, f: conv3d.apply({"params": {"kernel": k}},
                                     f.reshape(2, num_frames, 16, 16, 3)).reshape(-1, 8, 8, 8)
  assert ours(kernel, x).shape == (num_frames, 8, 8, 8)
  np.testing.assert_allclose(ours(kernel, x), flax3d(kernel, x), rtol=1e-4, atol=1e-4)
  for g, w in zip(*(jax.grad(lambda k, f, fn=fn: jnp.sum(jnp.sin(fn(k, f))), (0, 1))(kernel, x)
                    for fn in (ours, flax3d))):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * np.abs(w).max())
  # The encoder's blocks then shift over num_frames / 2 frames; clips stay separate.
  enc = video.VideoEncoder(depth=10, width=8, stem="small", stem_frames=3, stem_time_strides=2)
  clips = x.reshape(2, num_frames, 16, 16, 3)
  variables = enc.init(jax.random.key(0), clips, train=False)
  base = enc.apply(variables, clips, train=False)
  other = enc.apply(variables, clips.at[1].set(0.0), train=False)
  assert base.shape == (2, 64)
  np.testing.assert_allclose(other[0], base[0], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="stem_time_strides=2 needs"):
    resnet.ResNet(10, 8, "small", num_frames=5, stem_frames=3, stem_time_strides=2)


def test_video_encoder_params_carry_logical_axis_names():
  enc = video.VideoEncoder(depth=10, width=8, stem="small")
  boxed = jax.eval_shape(lambda: enc.init(jax.random.key(0), jnp.zeros((1, 2, 16, 16, 3)),
                                          train=False))
  specs = jax.tree.leaves(nn.get_partition_spec(boxed["params"]))
  assert any("conv_out" in tuple(s) for s in specs)


# ---- audio ---------------------------------------------------------------------------------


def np_log_mel(wave, rate, frame_length, frame_step, num_mel_bins, lower_hz, upper_hz):
  """The tf.signal recipe written out: one frame at a time, filters one triangle at a time."""
  n_fft = 1
  while n_fft < frame_length:
    n_fft *= 2
  window = np.array([0.5 - 0.5 * np.cos(2 * np.pi * i / frame_length)
                     for i in range(frame_length)])
  frames = []
  for start in range(0, len(wave) - frame_length + 1, frame_step):
    frames.append(np.abs(np.fft.rfft(wave[start:start + frame_length] * window, n=n_fft)))
  spec = np.array(frames, np.float64)  # (frames, n_fft // 2 + 1)
  mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
  edges = [mel(lower_hz) + (mel(upper_hz) - mel(lower_hz)) * i / (num_mel_bins + 1)
           for i in range(num_mel_bins + 2)]
  filters = np.zeros((spec.shape[1], num_mel_bins))
  for m in range(num_mel_bins):
    for k in range(1, spec.shape[1]):  # Bin 0 (DC) has no weight.
      f = mel(k * rate / 2 / (spec.shape[1] - 1))
      up = (f - edges[m]) / (edges[m + 1] - edges[m])
      down = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1])
      filters[k, m] = max(0.0, min(up, down))
  return np.log(spec @ filters + 1e-6)


SPECS = [dict(rate=8000, frame_length=256, frame_step=128, num_mel_bins=40, lower_hz=80.0,
              upper_hz=4000.0),
         dict(rate=16000, frame_length=400, frame_step=160, num_mel_bins=24, lower_hz=0.0,
              upper_hz=7000.0)]


@pytest.mark.parametrize("spec", SPECS, ids=["8k_pow2_frames", "16k_padded_fft"])
def test_log_mel_matches_numpy(spec):
  rng = np.random.default_rng(2)
  t = np.arange(4000) / spec["rate"]
  wave = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.normal(size=t.shape)
  kw = dict(spec)
  rate = kw.pop("rate")
  got = jax.jit(lambda w: audio.log_mel_spectrogram(w, sample_rate=rate, **kw))(
      jnp.asarray(wave[None], jnp.float32))
  want = np_log_mel(wave, rate, **kw)
  assert got.shape == (1,) + want.shape and got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got[0]), want, atol=2e-3)


def test_log_mel_puts_a_tone_in_its_band():
  rate, hz = 8000, 1000.0
  wave = jnp.sin(2 * np.pi * hz * jnp.arange(8000) / rate)[None]
  spec = audio.log_mel_spectrogram(wave, sample_rate=rate, frame_length=256, frame_step=128,
                                   num_mel_bins=40, lower_hz=80.0, upper_hz=4000.0)
  assert spec.shape == (1, 1 + (8000 - 256) // 128, 40)
  edges = np.linspace(audio.hz_to_mel(80.0), audio.hz_to_mel(4000.0), 42)
  band = int(np.argmin(np.abs(edges[1:-1] - audio.hz_to_mel(hz))))  # Peak nearest 1 kHz.
  assert set(np.asarray(jnp.argmax(spec[0], axis=-1)).tolist()) == {band}


def test_audio_encoder_shapes_and_bad_band():
  enc = audio.AudioEncoder(sample_rate=8000, frame_length=256, frame_step=128, num_mel_bins=40,
                           lower_hz=80.0, upper_hz=4000.0, depth=10, width=4, stem="small")
  wave = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, (3, 8000)), jnp.float32)
  out, _ = jax.jit(lambda k, w: enc.init_with_output(k, w, train=False))(jax.random.key(0), wave)
  assert out.shape == (3, resnet.feature_dim(10, 4))
  with pytest.raises(ValueError, match="Nyquist"):
    audio.mel_filterbank(8, 129, 8000.0, 80.0, 5000.0)
  with pytest.raises(ValueError, match="shorter than one frame"):
    audio.log_mel_spectrogram(wave[:, :100], sample_rate=8000, frame_length=256, frame_step=128,
                              num_mel_bins=40, lower_hz=80.0, upper_hz=4000.0)


# ---- text ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_text():
  enc = text.TextEncoder(vocab_size=30, word_dim=8, sentence_dim=16)
  ids = jnp.asarray([[5, 7, 2, 0, 0], [9, 0, 0, 0, 0], [0, 0, 0, 0, 0]], jnp.int32)
  variables = nn.unbox(enc.init(jax.random.key(0), ids))
  return enc, variables, ids


def test_text_encoder_is_the_mmv_head_over_real_tokens(tiny_text):
  enc, variables, ids = tiny_text
  out = np.asarray(enc.apply(variables, ids))
  p = variables["params"]
  table = np.asarray(p["word_embedding"]["embedding"])
  kernel, bias = (np.asarray(p["word_projection"][k]) for k in ("kernel", "bias"))
  for row, caption in zip(out, np.asarray(ids)):
    words = [w for w in caption if w != 0]
    hidden = [np.maximum(table[w] @ kernel + bias, 0) for w in words]
    want = np.max(hidden, axis=0) if hidden else np.zeros(16)
    np.testing.assert_allclose(row, want, rtol=1e-5, atol=1e-6)


def test_text_encoder_ignores_padding(tiny_text):
  enc, variables, ids = tiny_text
  out = np.asarray(enc.apply(variables, ids))
  # Whatever the padding token's embedding, and however much padding follows, nothing changes.
  poked = jax.tree.map(lambda x: x, variables)
  table = poked["params"]["word_embedding"]["embedding"]
  poked["params"]["word_embedding"]["embedding"] = table.at[0].set(100.0)
  np.testing.assert_array_equal(np.asarray(enc.apply(poked, ids)), out)
  longer = jnp.pad(ids, ((0, 0), (0, 7)))
  np.testing.assert_array_equal(np.asarray(enc.apply(variables, longer)), out)
  # Several captions per clip: leading axes pass through.
  many = enc.apply(variables, jnp.stack([ids, ids[::-1]], axis=1))
  assert many.shape == (3, 2, 16)
  np.testing.assert_array_equal(np.asarray(many[:, 0]), out)
