"""Audio encoder: a log-mel spectrogram computed on device, then a 2D ResNet over (time, mel).

MMV (Alayrac et al., NeurIPS 2020) feeds its audio ResNet50 with log-mel spectrograms of the raw
waveform, computed inside the model graph (its released models take raw 48 kHz audio). The
spectrogram follows `tf.signal` as MMV's data library (DMVR) uses it: frames of `frame_length`
samples every `frame_step` (no padding, so L samples give 1 + (L - frame_length) // frame_step
frames), periodic Hann window, FFT of the next power of two, magnitude, an HTK-mel triangular
filterbank (`tf.signal.linear_to_mel_weight_matrix`: DC excluded, triangles in mel space) and
log(mel + 1e-6).
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.models.resnet import ResNet


def hz_to_mel(hz):
  """HTK mel scale, as tf.signal: 1127 ln(1 + f / 700)."""
  return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(num_mel_bins: int, num_spectrogram_bins: int, sample_rate: float,
                   lower_hz: float, upper_hz: float) -> np.ndarray:
  """(num_spectrogram_bins, num_mel_bins) float32 weights, as
  `tf.signal.linear_to_mel_weight_matrix`.

  Band m is a triangle between mel edges m and m + 2 peaking at m + 1, the num_mel_bins + 2
  edges equally spaced in mel between lower_hz and upper_hz. A numpy constant: it depends only
  on static shapes, so it is baked into the compiled program.
  """
  if not 0.0 <= lower_hz < upper_hz <= sample_rate / 2:
    raise ValueError(f"need 0 <= lower_hz < upper_hz <= Nyquist ({sample_rate / 2}), got "
                     f"{lower_hz}, {upper_hz}")
  bin_mel = hz_to_mel(np.linspace(0.0, sample_rate / 2, num_spectrogram_bins))[1:, None]
  edges = np.linspace(hz_to_mel(lower_hz), hz_to_mel(upper_hz), num_mel_bins + 2)
  lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
  weights = np.maximum(0.0, np.minimum((bin_mel - lower) / (center - lower),
                                       (upper - bin_mel) / (upper - center)))
  return np.pad(weights, ((1, 0), (0, 0))).astype(np.float32)  # The DC bin gets no weight.


def log_mel_spectrogram(waveform, *, sample_rate: float, frame_length: int, frame_step: int,
                        num_mel_bins: int, lower_hz: float, upper_hz: float):
  """(..., L) waveform -> (..., num_frames, num_mel_bins) float32 log-mel magnitudes.

  Always float32: a bf16 FFT and log would lose the quiet bands.
  """
  x = waveform.astype(jnp.float32)
  length = x.shape[-1]
  if length < frame_length:
    raise ValueError(f"audio of {length} samples is shorter than one frame ({frame_length})")
  num_frames = 1 + (length - frame_length) // frame_step
  index = frame_step * np.arange(num_frames)[:, None] + np.arange(frame_length)
  # Periodic Hann, tf.signal.hann_window's default (the DFT-even window).
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_length) / frame_length)
  frames = x[..., index] * window.astype(np.float32)
  fft_length = 1 << (frame_length - 1).bit_length()
  magnitude = jnp.abs(jnp.fft.rfft(frames, n=fft_length))
  weights = mel_filterbank(num_mel_bins, fft_length // 2 + 1, float(sample_rate),
                           float(lower_hz), float(upper_hz))
  # Full precision: on GPU/TPU a default-precision matmul may round the magnitudes to bf16.
  mel = jnp.matmul(magnitude, weights, precision=jax.lax.Precision.HIGHEST)
  return jnp.log(mel + 1e-6)


class AudioEncoder(nn.Module):
  """(B, L) float waveform in [-1, 1] -> (B, D): log-mel spectrogram (B, frames, mels, 1), then
  a 2D ResNet whose "image" axes are time and frequency, globally average pooled (MMV: ResNet50).

  Attributes: the spectrogram's (sample_rate, frame_length, frame_step, num_mel_bins,
  lower_hz, upper_hz) and the ResNet's (depth, width, stem, dtype, zero_init_residual). The
  log-mel values go in unnormalised: the first BatchNorm, after the stem conv, standardises them.
  """
  sample_rate: float
  frame_length: int
  frame_step: int
  num_mel_bins: int
  lower_hz: float
  upper_hz: float
  depth: int = 18
  width: int = 64
  stem: str = "imagenet"
  dtype: Any = jnp.float32
  zero_init_residual: bool = True

  @nn.compact
  def __call__(self, waveform, train: bool):
    spec = log_mel_spectrogram(
        waveform, sample_rate=self.sample_rate, frame_length=self.frame_length,
        frame_step=self.frame_step, num_mel_bins=self.num_mel_bins, lower_hz=self.lower_hz,
        upper_hz=self.upper_hz)
    return ResNet(self.depth, self.width, self.stem, self.dtype,
                  zero_init_residual=self.zero_init_residual,
                  name="resnet")(spec[..., None], train)
