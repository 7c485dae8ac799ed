"""MMV (Alayrac et al., "Self-Supervised MultiModal Versatile Networks", NeurIPS 2020).

A video, audio and text backbone (TSM-ResNet, log-mel ResNet, word-embedding head) and
projection heads into embedding spaces chosen by `config.mmv.graph`:
  shared    one joint space for V, A and T (dimension va_dim).
  disjoint  separate spaces: V and A meet in VA, V and T in VT; video has one head per space.
  fac       (default, the paper's best) fine-to-coarse: V and A meet in the fine VA space
            (va_dim); a head g_{va->vat} maps VA to the coarse VAT space (vat_dim) where text
            lives, so audio also reaches text through it. As in the released models
            ("fac_relu"), a ReLU sits between the VA embedding and g_{va->vat}.
Heads as in the released config: video->VA an MLP (va_dim, BN, ReLU, va_dim) with BatchNorm
after it, audio->VA and text->VAT linear, the video->VAT projection (g_{va->vat}, or video->VT
for disjoint) linear with BatchNorm after it. (The output BatchNorms have no scale/shift here.)

Loss over the global batch (eq. 3): lambda_va * NCE(video_va, audio_va) + lambda_vt *
MIL-NCE(video_vat, text_vat with K captions per clip), on L2-normalised embeddings whose dot
products are divided by the temperature (mmv.temperature_va for VA, mmv.temperature for VT;
the paper uses one, 0.07). Both terms use `losses.mil_nce` (NCE is its K = 1
case): the clip's positive competes in one softmax with all pairs (v_i, a_j) and (v_j, a_i).
With `mmv.caption_negatives` = Q > 0 (not in the paper; 0 by default), the first captions of the
last Q / batch_size batches, kept as token ids in model_state["caption_queue"], are embedded again
by the current text tower each step and join every clip's video-text denominator as negatives:
more captions that differ from a clip's own in one word (e.g. only the shape), at the cost of
embedding Q captions (the text tower is the cheapest), and never stale, unlike MoCo's stored keys.
An online linear probe on the stop-gradient video features reports `probe_acc`.
"""
import jax.numpy as jnp
from flax import linen as nn

from jaxssl import losses
from jaxssl.components import queue as queue_lib
from jaxssl.methods import _multimodal
from jaxssl.models import heads
from jaxssl.models.text import PAD_ID

GRAPHS = ("shared", "disjoint", "fac")


class MMVNet(_multimodal.VideoProbeMixin, nn.Module):
  video_encoder: nn.Module
  audio_encoder: nn.Module
  text_encoder: nn.Module
  graph: str
  va_dim: int
  vat_dim: int
  num_classes: int
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    def linear(dim, bn):
      return heads.MLPHead(hidden_dim=dim, out_dim=dim, num_layers=1, use_bn=False, last_bn=bn,
                           dtype=self.dtype)

    self.video_to_va = heads.MLPHead(hidden_dim=self.va_dim, out_dim=self.va_dim, num_layers=2,
                                     last_bn=True, dtype=self.dtype)
    self.audio_to_va = linear(self.va_dim, False)
    if self.graph == "fac":
      self.va_to_vat = linear(self.vat_dim, True)
    elif self.graph == "disjoint":
      self.video_to_vt = linear(self.vat_dim, True)
    self.text_to_vat = linear(self.va_dim if self.graph == "shared" else self.vat_dim, False)
    self.online_probe = _multimodal.maybe_online_probe(self.num_classes)

  def __call__(self, train, video=None, audio=None, text=None):
    out = {}
    if video is not None:
      features = self.video_encoder(video, train=train)
      va = self.video_to_va(features, train=train)
      if self.graph == "fac":
        vat = self.va_to_vat(nn.relu(va), train=train)
      elif self.graph == "disjoint":
        vat = self.video_to_vt(features, train=train)
      else:
        vat = va
      out.update(video_features=features, video_va=va, video_vat=vat)
    if audio is not None:
      features = self.audio_encoder(audio, train=train)
      out.update(audio_features=features, audio_va=self.audio_to_va(features, train=train))
    if text is not None:
      out["text_vat"] = self.text_to_vat(self.text_encoder(text, train=train), train=train)
    return out

class Method(_multimodal.MultimodalMethod):
  modalities = ("video", "audio", "text")

  def __init__(self, config, data_info):
    args = config.mmv
    if args.graph not in GRAPHS:
      raise ValueError(f"config.mmv.graph={args.graph!r}: choose one of {GRAPHS}")
    net = MMVNet(
        video_encoder=_multimodal.video_encoder(config),
        audio_encoder=_multimodal.audio_encoder(config),
        text_encoder=_multimodal.text_encoder(config), graph=args.graph, va_dim=args.va_dim,
        vat_dim=args.vat_dim, num_classes=data_info.num_classes,
        dtype=jnp.dtype(config.compute_dtype))
    if args.caption_negatives:
      queue_lib.check_size(args.caption_negatives, config.batch_size)
    super().__init__(config, data_info, net)

  def init(self, rng):
    variables = super().init(rng)
    if self.config.mmv.caption_negatives:  # Token ids; all padding = not filled yet.
      tokens = jnp.zeros((self.config.mmv.caption_negatives, self.config.data.max_caption_len),
                         jnp.int32)
      variables["caption_queue"] = {"keys": tokens, "ptr": jnp.zeros((), jnp.int32)}
    return variables

  def _caption_negatives(self, params, model_state, batch):
    """The queue's captions embedded by the current text tower (so never stale, unlike
    MoCo's stored keys: the text tower costs little), which rows are filled, and the queue
    with this batch's first captions written over its oldest rows."""
    queue = model_state["caption_queue"]
    tokens = queue["keys"]
    embedded = self.net.apply({"params": params}, train=True, text=tokens)["text_vat"]
    valid = tokens[:, 0] != PAD_ID
    # Unfilled rows embed to ~0, whose normalisation has an infinite gradient (NaN once masked).
    embedded = jnp.where(valid[:, None], embedded, 1.0)
    return losses.l2_normalize(embedded), valid, queue_lib.enqueue(queue, batch["text"][:, 0])

  def loss(self, params, model_state, batch, rng, step):
    del step
    args = self.config.mmv
    out, new_state = self.forward(params, model_state, self.train_inputs(rng, batch))
    unit = losses.l2_normalize
    video_va, video_vat = unit(out["video_va"]), unit(out["video_vat"])
    audio_va, text_vat = unit(out["audio_va"]), unit(out["text_vat"])
    loss_va = losses.mil_nce(video_va / args.temperature_va, audio_va[:, None])
    negatives = valid = None
    if args.caption_negatives:
      negatives, valid, new_state["caption_queue"] = self._caption_negatives(
          params, model_state, batch)
    loss_vt = losses.mil_nce(video_vat / args.temperature, text_vat, negatives, valid)
    probe_loss, metrics = self.probe_loss(params, out["video_features"], batch["label"])
    metrics.update(
        loss_va=loss_va, loss_vt=loss_vt,
        # In-batch retrieval top-1 (clip -> its audio, clip -> its first caption).
        va_acc=losses.contrastive_accuracy(video_va, audio_va),
        vt_acc=losses.contrastive_accuracy(video_vat, text_vat[:, 0]))
    loss = args.weight_va * loss_va + args.weight_vt * loss_vt
    return loss + probe_loss, (metrics, new_state)
