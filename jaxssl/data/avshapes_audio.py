"""The soundtrack of an avshapes clip.

What a perfect listener can tell about the video, by design: the object's class (the pitch: 10
fundamentals 3.2 semitones apart, +-1 semitone of jitter), its colour (the timbre: 8 harmonic
profiles over 4 partials, and the material's resonance, a partial at one of 8 fixed
`RESONANCE_HZ` from 1 to 3.7 kHz, +-0.5 semitone, that rings with the tone), its size (big
objects ring 3x longer after each event and are louder), its speed (while it moves it rattles,
amplitude-modulated at 4-6 Hz when slow and 11-14 Hz when fast), its motion (a straight-line
mover whistles: a soft tone gliding up for right and up, down for left and down, around 1 kHz
for horizontal and 2.2 kHz for vertical motion; a bouncing object rattles and hits the floor, a
pulsing one is still between beats), the scene (each background colour has its own ambience, a
steady band of noise around one of 6 `AMBIENCE_HZ`, as rooms sound different) and the instants
of its events (appearing, wall hits, bounces, beats: a percussive attack plus a noise click
exactly at the event's frame time). Nuisances: pitch and timbre jitter, random phases, loudness,
white/low-passed noise and an unrelated tone burst.
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
NUM_UNIFORMS = 27
# The ring of each colour's material (Hz), about a quarter octave apart, above the fundamentals.
# Unlike the harmonic profile it does not move with the pitch, so a log-mel spectrogram shows it
# plainly: a linear probe of the time-averaged 40-band log-mel reads the colour at 0.91, vs 0.24
# from the harmonic profiles alone, whose 2nd-4th partials sit where the pitch puts them.
RESONANCE_HZ = np.geomspace(1000.0, 3700.0, NUM_COLOURS).tolist()
# Centre of each background's ambience band (Hz), a quarter to a half octave apart above the
# class fundamentals' range; the band is a Gaussian of 0.1 octave (std) in log frequency.
AMBIENCE_HZ = (420.0, 700.0, 1100.0, 1650.0, 2400.0, 3400.0)
# Whistle of a straight-line mover: centre (Hz) per axis, glide in semitones per second.
_WHISTLE_HZ, _GLIDE = (1000.0, 2200.0), 8.0


def _band_noise(rng, centre, length, rate):
  """Unit-RMS noise whose spectrum is a Gaussian of 0.1 octave around `centre` (Hz)."""
  spectrum = np.fft.rfft(rng.random(length, dtype=np.float32) - 0.5)
  octaves = np.log2(np.maximum(np.fft.rfftfreq(length, 1.0 / rate), 1.0) / centre)
  band = np.fft.irfft(spectrum * np.exp(-0.5 * (octaves / 0.1) ** 2), n=length)
  return (band / max(float(np.sqrt(np.mean(band ** 2))), 1e-8)).astype(np.float32)


def synth(u, rng, *, label, colour, big, fast, motion, background, events, t_app, move_end,
          length, rate):
  """Mono float32 (length,) in [-1, 1].

  u: NUM_UNIFORMS uniforms; rng: a Generator for the noise; motion: index into avshapes'
  MOTION_NAMES (0-3 straight lines: right, left, up, down); background: index into
  AMBIENCE_HZ; events: event times (s); the object is audible from t_app on and rattles (and
  whistles) while it moves, from t_app to move_end (s).
  """
  u = iter(u).__next__
  t = np.arange(length, dtype=np.float32) / rate
  f0 = BASE_F0[label] * 2.0 ** ((2 * u() - 1) / 12)
  amps = TIMBRES[colour] * (0.85 + 0.3 * np.array([u() for _ in range(4)], np.float32))
  phases = 2 * np.pi * np.array([u() for _ in range(4)], np.float32)[:, None]
  freqs = (2 * np.pi * f0 * np.arange(1, 5, dtype=np.float32))[:, None]
  tone = amps @ np.sin(freqs * t + phases) / amps.sum()
  # The resonance rings with the tone. Its draws come from `rng` so that the uniforms keep
  # their slots in `avshapes`.
  detune, level, phase = rng.random(3)
  ring_hz = RESONANCE_HZ[colour] * 2.0 ** ((detune - 0.5) / 12)
  tone += (0.25 + 0.15 * level) * np.sin(2 * np.pi * ring_hz * t + 6.3 * phase).astype(np.float32)
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
  whistle_level, whistle_detune, ambience_level = u(), u(), u()
  if motion < 4:  # Right and up glide up, left and down glide down, while moving.
    moving = (t >= t_app) & (t < move_end)
    glide = (1.0 if motion in (0, 2) else -1.0) * _GLIDE / 12 * np.maximum(t - t_app, 0.0)
    hz = _WHISTLE_HZ[motion >= 2] * 2.0 ** ((2 * whistle_detune - 1) / 12 + glide)
    audio += moving * (0.08 + 0.07 * whistle_level) * np.sin(
        2 * np.pi * np.cumsum(hz) / rate).astype(np.float32)
  audio += (0.02 + 0.02 * ambience_level) * _band_noise(rng, AMBIENCE_HZ[background], length, rate)
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
