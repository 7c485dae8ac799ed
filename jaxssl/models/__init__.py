"""Model zoo: encoders built from a `config.model` ConfigDict, plus SSL heads.

Encoder configs (every field but `name` is optional; defaults as in the modules):
  resnet: name="resnet", depth, width, stem, dtype.
  vit:    name="vit", variant (e.g. "tiny/4"), pool, posemb, dropout, remat,
          scan_layers, tubelet (frames per token of a clip), dtype.
`dtype` is a string, "float32" or "bfloat16". A config may carry the fields of
both encoders (so that `--config.model.name=vit` can switch); those of the other
encoder are ignored. That is why a ViT's size comes from `variant` alone: a
ResNet's `depth` and `width` left in the config must not resize it. Fields of
neither encoder are rejected, so a misspelt override fails loudly.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxssl.models import resnet as resnet_lib
from jaxssl.models.heads import LinearClassifier, MLPHead
from jaxssl.models.resnet import ResNet
from jaxssl.models.vit import ViT, posemb_sincos_2d, vit_config

__all__ = [
    "LinearClassifier", "MLPHead", "ResNet", "ViT", "build_encoder",
    "feature_dim", "posemb_sincos_2d", "vit_config",
]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_FIELDS = {
    "resnet": {"depth", "width", "stem"},
    "vit": {"variant", "pool", "posemb", "dropout", "remat", "scan_layers", "tubelet"},
}


def _encoder_kwargs(model_config) -> tuple[str, dict[str, Any]]:
  """Validates the config and returns (name, constructor kwargs)."""
  config = dict(model_config)
  name = config.pop("name", None)
  if name not in _FIELDS:
    raise ValueError(f"model.name must be one of {sorted(_FIELDS)}, got {name!r}")
  dtype = config.pop("dtype", "float32")
  if dtype not in _DTYPES:
    raise ValueError(
        f"model.dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
  known = set().union(*_FIELDS.values())
  unknown = sorted(set(config) - known)
  if unknown:
    raise ValueError(f"unknown field model.{unknown[0]}; known fields: "
                     f"{sorted(known | {'name', 'dtype'})}")
  config = {k: v for k, v in config.items() if k in _FIELDS[name]}
  if name == "vit":
    config.update(vit_config(config.pop("variant", "base")))
  return name, dict(config, dtype=_DTYPES[dtype])


def build_encoder(model_config) -> nn.Module:
  """The encoder module; `__call__(x, train)` maps (B, H, W, C) to (B, D)."""
  name, kwargs = _encoder_kwargs(model_config)
  return {"resnet": ResNet, "vit": ViT}[name](**kwargs)


def feature_dim(model_config) -> int:
  """D, the width of the encoder's pooled features, without running it."""
  encoder = build_encoder(model_config)
  if isinstance(encoder, ResNet):
    return resnet_lib.feature_dim(encoder.depth, encoder.width)
  return encoder.width
