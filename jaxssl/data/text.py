"""Word-level tokenizer over a fixed, closed vocabulary.

Why word-level and closed: the captions of the procedural datasets come from a small grammar,
so every word they can contain is known in advance. A vocabulary enumerated from that grammar
is deterministic (same ids on every machine and run, nothing to train or ship) and tiny, which
keeps a text encoder's embedding table cheap on CPU. `<unk>` only catches hand-written queries.
"""
import re

import numpy as np

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
# Lower-case words, hyphenated compounds ("five-pointed") kept whole; punctuation is dropped.
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def split_words(caption: str) -> list:
  return _WORD.findall(caption.lower())


class WordTokenizer:
  """Maps words to ids 2.. in sorted order; 0 is padding, 1 unknown."""

  def __init__(self, words):
    self.words = (PAD, UNK) + tuple(sorted(set(words)))
    self.ids = {w: i for i, w in enumerate(self.words)}
    self.vocab_size = len(self.words)

  def encode(self, caption: str, max_len: int) -> np.ndarray:
    """int32 (max_len,): the caption's word ids, truncated, then right-padded with PAD_ID."""
    ids = [self.ids.get(w, UNK_ID) for w in split_words(caption)[:max_len]]
    out = np.zeros(max_len, np.int32)
    out[:len(ids)] = ids
    return out

  def encode_batch(self, captions, max_len: int) -> np.ndarray:
    """int32 (len(captions), max_len)."""
    return np.stack([self.encode(c, max_len) for c in captions]) if captions else np.zeros(
        (0, max_len), np.int32)

  def decode(self, ids) -> str:
    """Words of the non-padding ids joined by spaces (inverse of encode up to punctuation)."""
    return " ".join(self.words[i] for i in np.asarray(ids).ravel().tolist() if i != PAD_ID)

  def __repr__(self):
    return f"WordTokenizer(vocab_size={self.vocab_size})"
