"""The soundtrack of an avshapes clip.

What a perfect listener can tell about the video, by design: the object's class (the pitch: 10
fundamentals 3.2 semitones apart, +-1 semitone of jitter), its colour (the timbre: 8 harmonic
profiles over 4 partials), its size (big objects ring 3x longer after each event and are
louder), its speed (while it moves it rattles, amplitude-modulated at 4-6 Hz when slow and
11-14 Hz when fast) and the instants of its events (appearing, wall hits, bounces, beats: a
percussive attack plus a noise click exactly at the event's frame time). Nuisances: pitch and
timbre jitter, random phases, loudness, white/low-passed noise and an unrelated tone burst.
"""
import numpy as np

NUM_CLASSES, NUM_COLOURS = 10, 8
BASE_F0 = (150.0 * 2.0 ** (3.2 * np.arange(NUM_CLASSES) / 12)).tolist()  # Hz, per class.
# Amplitudes of partials 1-4 per colour; the fundamental always dominates, so the pitch (the
# class) reads the same whatever the timbre.
TIMBRES = np.array([[1., 0., 0., 0.], [1., .8, 0., 0.], [1., 0., .8, 0.], [1., 0., 0., .8],
                    [1., .6, .6, 0.], [1., .6, 0., .6], [1., 0., .6, .6], [1., .5, .5, .5]],
                   np.float32)
assert len(TIMBRES) == NUM_COLOURS
NUM_UNIFORMS = 24


def synth(u, rng, *, label, colour, big, fast, events, t_app, move_end, length, rate):
  """Mono float32 (length,) in [-1, 1].

  u: NUM_UNIFORMS uniforms; rng: a Generator for the noise; events: event times (s); the
  object is audible from t_app on and rattles while it moves, from t_app to move_end (s).
  """
  u = iter(u).__next__
  t = np.arange(length, dtype=np.float32) / rate
  f0 = BASE_F0[label] * 2.0 ** ((2 * u() - 1) / 12)
  amps = TIMBRES[colour] * (0.85 + 0.3 * np.array([u() for _ in range(4)], np.float32))
  phases = 2 * np.pi * np.array([u() for _ in range(4)], np.float32)[:, None]
  freqs = (2 * np.pi * f0 * np.arange(1, 5, dtype=np.float32))[:, None]
  tone = amps @ np.sin(freqs * t + phases) / amps.sum()
  ev = np.sort(np.asarray(events, np.float32))
  since = t - np.concatenate([[-1e3], ev]).astype(np.float32)[np.searchsorted(ev, t, "right")]
  decay = 0.14 + 0.06 * u() if big else 0.04 + 0.02 * u()
  rattle_hz = 11 + 3 * u() if fast else 4 + 2 * u()
  rattle = (0.12 + 0.1 * u()) * (0.55 + 0.45 * np.sin(2 * np.pi * rattle_hz * t + 6.3 * u()))
  rattle *= (t >= t_app) & (t < move_end)
  gain = (0.55 + 0.25 * u()) if big else (0.3 + 0.15 * u())
  # Unit-variance uniform white noise: a third of the cost of normal draws, and just as white.
  white = (rng.random(length + 16, dtype=np.float32) - 0.5) * 3.46
  click = (0.2 + 0.3 * u()) * white[16:] * np.exp(since / -0.006)
  audio = gain * (tone * (rattle + np.exp(since / -decay)) + click)
  # Background noise: white mixed with a 16-tap moving average (low-passed) of it.
  total = np.cumsum(white)
  smooth = (total[16:] - total[:-16]) / 4.0
  mix = u()
  audio += (0.005 + 0.03 * u()) * ((1 - mix) * white[:length] + mix * smooth[:length])
  freq, span, start, amp, phase, on = (u() for _ in range(6))
  if on < 0.5:  # An unrelated tone burst with a smooth (Hann) envelope.
    freq, span = 120 * (2500 / 120) ** freq, 0.1 + 0.25 * span
    i0 = int(start * max(length / rate - span, 0.0) * rate)
    num = min(int(span * rate), length - i0)
    tb = np.arange(num, dtype=np.float32)
    audio[i0:i0 + num] += (0.03 + 0.12 * amp) * np.sin(np.pi * tb / num) ** 2 * np.sin(
        2 * np.pi * freq / rate * tb + 6.3 * phase)
  return np.clip(audio * (0.7 + 0.3 * u()), -1.0, 1.0).astype(np.float32)
