"""Methods: one module per method, chosen by `config.method` and resolved by module path.

A method module defines `Method(config, data_info)` with:
  init(rng) -> boxed flax variables {"params": ..., <other collections>}; params carry logical
      axis names (nn.with_logical_partitioning) so the loop can shard them.
  loss(params, model_state, batch, rng, step) -> (loss, (metrics, new_model_state))
      batch: dict of global arrays (image uint8 (B,H,W,3), label, index); augmentation happens here,
      on device. model_state: every non-trained collection (BatchNorm statistics, EMA targets,
      queues, ...). Labels may only feed stop-gradient probes, never the self-supervised loss.
  embed(params, model_state, images) -> (B, D) float32 features for evaluators (no augmentation).
"""
import dataclasses

from jaxssl import plugins


@dataclasses.dataclass(frozen=True)
class DataInfo:
  image_size: int
  num_classes: int


def build(config, data_info):
  method_class = plugins.resolve("jaxssl.methods", config.method, "Method", "config.method")
  return method_class(config, data_info)
