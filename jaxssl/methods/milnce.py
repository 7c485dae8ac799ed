"""MIL-NCE (Miech et al., "End-to-End Learning of Visual Representations from Uncurated
Instructional Videos", CVPR 2020): video and text only.

The video backbone (TSM-ResNet here; S3D-G in the paper) and the text head (word embeddings ->
linear -> ReLU -> max over words) each end in a linear layer to a joint space of `embed_dim`
(512 in the paper, its `fc` and `fc2`). The loss is `losses.mil_nce` over the global batch with
the clip's K captions as its bag of candidate positives. The paper scores raw dot products
(`milnce.l2_normalize=False`, temperature 1); with `l2_normalize=True` the scores are cosines
over `temperature`, as in MMV, which is steadier in short low-batch runs. An online linear
probe on the stop-gradient video features reports `probe_acc`.

Embed contract (see _multimodal): video -> video_features, video_vat; text -> text_vat (the
joint-space embeddings keep the "vat" name of the MMV contract so evaluators treat both alike).
"""
import jax.numpy as jnp
from flax import linen as nn

from jaxssl import losses
from jaxssl.methods import _multimodal
from jaxssl.models import heads


class MILNCENet(_multimodal.VideoProbeMixin, nn.Module):
  video_encoder: nn.Module
  text_encoder: nn.Module
  embed_dim: int
  num_classes: int
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    def linear():
      return heads.MLPHead(hidden_dim=self.embed_dim, out_dim=self.embed_dim, num_layers=1,
                           use_bn=False, dtype=self.dtype)

    self.video_to_vt = linear()
    self.text_to_vt = linear()
    self.online_probe = _multimodal.maybe_online_probe(self.num_classes)

  def __call__(self, train, video=None, text=None):
    out = {}
    if video is not None:
      features = self.video_encoder(video, train=train)
      out.update(video_features=features, video_vat=self.video_to_vt(features, train=train))
    if text is not None:
      out["text_vat"] = self.text_to_vt(self.text_encoder(text, train=train), train=train)
    return out

class Method(_multimodal.MultimodalMethod):
  modalities = ("video", "text")

  def __init__(self, config, data_info):
    net = MILNCENet(
        video_encoder=_multimodal.video_encoder(config),
        text_encoder=_multimodal.text_encoder(config), embed_dim=config.milnce.embed_dim,
        num_classes=data_info.num_classes, dtype=jnp.dtype(config.compute_dtype))
    super().__init__(config, data_info, net)

  def loss(self, params, model_state, batch, rng, step):
    del step
    args = self.config.milnce
    out, new_state = self.forward(params, model_state, self.train_inputs(rng, batch))
    video, text = out["video_vat"], out["text_vat"]
    if args.l2_normalize:
      video, text = losses.l2_normalize(video), losses.l2_normalize(text)
    loss = losses.mil_nce(video.astype(jnp.float32) / args.temperature, text)
    probe_loss, metrics = self.probe_loss(params, out["video_features"], batch["label"])
    metrics["vt_acc"] = losses.contrastive_accuracy(video, text[:, 0])
    return loss + probe_loss, (metrics, new_state)
