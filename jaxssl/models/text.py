"""Text encoder: MMV's / MIL-NCE's sentence head over word embeddings.

MIL-NCE (Miech et al., CVPR 2020) and MMV (Alayrac et al., NeurIPS 2020) embed each word with
word2vec, apply a shared linear layer (a 1x1 conv over words, to 2048 channels) and a ReLU, then
max-pool over the words. Here the word embeddings are learnt from scratch: no pretrained vectors
can be downloaded, and the procedural datasets have their own closed vocabulary.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

PAD_ID = 0  # jaxssl.data.text.PAD_ID: token ids are right-padded with 0.


class TextEncoder(nn.Module):
  """(..., L) int token ids, 0 = padding -> (..., sentence_dim) float.

  embedding (vocab_size, word_dim) -> Dense(sentence_dim) -> ReLU -> max over the non-padding
  tokens. Padding is excluded by zeroing its activations before the max: after the ReLU every
  activation is >= 0, so a zero never wins over a real token and the result equals the max over
  real tokens alone (an all-padding caption embeds to 0). The reference implementations instead
  max-pool over the padding too (it acts as one more word).
  """
  vocab_size: int
  word_dim: int = 300
  sentence_dim: int = 2048
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, token_ids, train: bool = False):
    del train  # No batch statistics; the argument keeps the encoders' common signature.
    words = nn.Embed(
        self.vocab_size, self.word_dim, dtype=self.dtype, param_dtype=jnp.float32,
        embedding_init=nn.with_logical_partitioning(
            nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
        name="word_embedding")(token_ids)
    hidden = nn.relu(nn.Dense(
        self.sentence_dim, dtype=self.dtype, param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                 ("embed", "mlp")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)),
        name="word_projection")(words))
    hidden = jnp.where((token_ids != PAD_ID)[..., None], hidden, 0)
    return jnp.max(hidden, axis=-2)
