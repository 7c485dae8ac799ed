"""Caption grammar of avshapes: words per generative factor, templates, vocabulary, prompts.

A caption names every factor of a clip that the video shows plainly: the object's size, colour
and shape, its motion and speed, and the background's colour. Together these take ~11,000
values, so a caption nearly identifies its clip among 1,000 (tests/test_avshapes.py measures
the perfect-retrieval bound). Synonyms of different values of a factor share no word, and the
object's and the background's colours use disjoint words, so even a bag-of-words text encoder
can read every factor off a caption; motion phrasings of different classes share only
direction-free words ("moves", "the", ...).
"""
import re

import numpy as np

from jaxssl.data import text

SHAPE_WORDS = (("disc", "circle", "round dot"), ("square", "box", "square block"),
               ("triangle", "wedge", "three-sided triangle"),
               ("star", "five-pointed star", "starburst"), ("cross", "plus sign", "plus"),
               ("ring", "hoop", "doughnut"), ("semicircle", "dome", "half-circle"),
               ("crescent", "sickle", "crescent moon"), ("heart", "love heart", "valentine heart"),
               ("arrow", "pointer", "dart"))
COLOUR_WORDS = (("red", "crimson", "scarlet"), ("orange", "amber", "tangerine"),
                ("yellow", "golden", "lemon"), ("green", "emerald", "jade"),
                ("blue", "azure", "cobalt"), ("purple", "violet", "plum"),
                ("white", "snowy", "ivory"), ("black", "ebony", "inky"))
BACKGROUND_WORDS = (("grey", "gray", "ashen"), ("brown", "chocolate", "coffee"),
                    ("pink", "rosy", "salmon"), ("teal", "turquoise", "cyan"),
                    ("beige", "sandy", "cream"), ("navy", "midnight", "indigo"))
SIZE_WORDS = (("small", "little", "tiny"), ("big", "large", "huge"))
SPEED_WORDS = (("slowly", "gently", "unhurriedly"), ("quickly", "rapidly", "swiftly"))


def _directional(way):
  return ((f"moves to the {way}", f"moving to the {way}"), (f"slides {way}wards",
          f"sliding {way}wards"), (f"drifts {way}", f"drifting {way}"),
          (f"heads to the {way}", f"heading to the {way}"), (f"glides {way}", f"gliding {way}"))


MOTION_WORDS = (  # (present tense, gerund) phrasings per motion class.
    _directional("right"), _directional("left"),
    (("moves up", "moving up"), ("rises", "rising"), ("floats upwards", "floating upwards"),
     ("climbs", "climbing"), ("drifts up", "drifting up")),
    (("moves down", "moving down"), ("sinks", "sinking"), ("descends", "descending"),
     ("slides downwards", "sliding downwards"), ("drifts down", "drifting down")),
    # No "up"/"down" here: those words belong to the vertical motions.
    (("bounces", "bouncing"), ("bounces on the floor", "bouncing on the floor"),
     ("hops along the floor", "hopping along the floor"), ("bounces like a ball",
     "bouncing like a ball"), ("keeps bouncing", "bouncing repeatedly")),
    (("pulses", "pulsing"), ("grows and shrinks", "growing and shrinking"),
     ("throbs in place", "throbbing in place"), ("pulsates", "pulsating"),
     ("swells and shrinks", "swelling and shrinking")))
BACKGROUND_PHRASES = ("on a {} background", "against a {} backdrop", "over a {} background",
                      "with a {} background")
# {d} determiner, {z} size, {c} colour, {s} shape, {m} motion (present), {g} motion (gerund),
# {v} speed, {b} background phrase.
TEMPLATES = ("{d} {z} {c} {s} {m} {v} {b}", "{d} {z} {c} {s} {v} {g} {b}",
             "{d} {z} {c} {s} is {g} {v} {b}", "there is {d} {z} {c} {s} {g} {v} {b}",
             "{b} {d} {z} {s} in {c} {m} {v}", "we see {d} {z} {c} {s} that {v} {m} {b}",
             "in this clip {d} {z} {c} {s} {m} {v} {b}", "{b} {d} {c} {s} of {z} size {m} {v}")
DETERMINERS = ("a", "the", "one")
_A_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou])")
# Uniforms one caption consumes: template, determiner, size, colour, shape, motion, speed,
# background word, background phrase.
UNIFORMS_PER_CAPTION = 9


def _slot_phrases():
  """Every phrase each template slot can take."""
  flat = lambda groups: [p for g in groups for p in g]  # noqa: E731
  backgrounds = [p.format(w) for p in BACKGROUND_PHRASES for w in flat(BACKGROUND_WORDS)]
  return dict(d=list(DETERMINERS) + ["an"], z=flat(SIZE_WORDS), c=flat(COLOUR_WORDS),
              s=flat(SHAPE_WORDS), m=[pair[0] for g in MOTION_WORDS for pair in g],
              g=[pair[1] for g in MOTION_WORDS for pair in g], v=flat(SPEED_WORDS),
              b=backgrounds)


def _grammar():
  """(every word a caption can contain, the most words one can have)."""
  slots = _slot_phrases()
  words = {w for phrases in slots.values() for p in phrases for w in text.split_words(p)}
  longest = {k: max(len(text.split_words(p)) for p in v) for k, v in slots.items()}
  most = 0
  for t in TEMPLATES:
    literal = text.split_words(re.sub(r"\{\w\}", " ", t))
    words.update(literal)
    most = max(most, len(literal) + sum(longest[k] for k in re.findall(r"\{(\w)\}", t)))
  return sorted(words), most


WORDS, MAX_CAPTION_WORDS = _grammar()
TOKENIZER = text.WordTokenizer(WORDS)


def _pick(options, u):
  return options[int(u * len(options))]


def captions_for(u, factors, num_captions):
  """`num_captions` distinct captions of a clip.

  u: UNIFORMS_PER_CAPTION uniforms per caption (wording); factors: dict with the clip's label,
  colour, motion, size, speed and background (ints).
  """
  f = factors
  out = []
  for j in range(num_captions):
    t, d, z, c, s, m, v, bw, bp = u[UNIFORMS_PER_CAPTION * j:UNIFORMS_PER_CAPTION * (j + 1)]
    present, gerund = _pick(MOTION_WORDS[f["motion"]], m)
    fill = dict(d=_pick(DETERMINERS, d), z=_pick(SIZE_WORDS[f["size"]], z),
                c=_pick(COLOUR_WORDS[f["colour"]], c), s=_pick(SHAPE_WORDS[f["label"]], s),
                m=present, g=gerund, v=_pick(SPEED_WORDS[f["speed"]], v),
                b=_pick(BACKGROUND_PHRASES, bp).format(_pick(BACKGROUND_WORDS[f["background"]], bw)))
    first = int(t * len(TEMPLATES))
    for k in range(len(TEMPLATES)):  # Next template on a repeat: K <= 8 are always distinct.
      caption = _A_BEFORE_VOWEL.sub("an ", TEMPLATES[(first + k) % len(TEMPLATES)].format(**fill))
      if caption not in out:
        break
    out.append(caption)
  return out


def class_prompts(num_per_class, seed=0):
  """For zero-shot classification: `num_per_class` captions per object class (a list per
  class), every other factor and the wording drawn at random, so that averaging their text
  embeddings marginalises out all but the class (prompt ensembling)."""
  out = []
  for label in range(len(SHAPE_WORDS)):
    rng = np.random.default_rng([seed, label])
    prompts = []
    for _ in range(num_per_class):
      f = rng.random(5)
      factors = dict(label=label, colour=int(f[0] * len(COLOUR_WORDS)),
                     motion=int(f[1] * len(MOTION_WORDS)), size=int(f[2] * len(SIZE_WORDS)),
                     speed=int(f[3] * len(SPEED_WORDS)),
                     background=int(f[4] * len(BACKGROUND_WORDS)))
      prompts += captions_for(rng.random(UNIFORMS_PER_CAPTION).tolist(), factors, 1)
    out.append(prompts)
  return out
