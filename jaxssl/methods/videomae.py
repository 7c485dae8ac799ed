"""VideoMAE (Tong et al., "VideoMAE: Masked Autoencoders are Data-Efficient Learners for
Self-Supervised Video Pre-Training", NeurIPS 2022).

MAE on clips: tubelet tokens (`config.model.tubelet` frames x patch x patch), tube masking at a
90% ratio (the same spatial positions masked in every frame, so a masked patch cannot be copied
from its neighbour in time), a ViT with mean pooling, and a loss on masked tubelets against the
clip's [0, 1] pixels normalised per tubelet and channel (`config.mae.norm_per_channel`, VideoMAE's
target; `jaxssl.losses.mae`) or, as MAE, per tubelet (the CPU default: see configs/videomae.py).
Everything else is MAE's (jaxssl/methods/mae.py).

Clips come as `batch["video"]` uint8 (B, T, H, W, 3); one crop, flip and jitter per clip
(`config.augment`, as the multimodal methods). The multimodal evaluator probes the video
features (`embed_modalities` with video only) and draws the reconstructions.
"""

from jaxssl import augment
from jaxssl.methods import mae
from jaxssl.models import mae as mae_lib


class Method(mae.Method):
  modalities = ("video",)
  maskings = ("tube", "random")

  def input_shape(self):
    s = self.image_size
    return (self.config.data.num_frames, s, s, 3)

  def mask(self, rng, batch):
    if self.args.masking == "tube":
      return mae_lib.tube_masking(rng, batch, self.grid, self.args.mask_ratio)
    return super().mask(rng, batch)

  def view(self, rng, batch):
    return augment.video_view(rng, batch["video"], out_size=self.image_size,
                              cfg=self.config.augment)

  def center(self, videos):
    b, t, h, w, c = videos.shape
    frames = augment.center_view(videos.reshape(b * t, h, w, c), out_size=self.image_size)
    return frames.reshape((b, t) + frames.shape[1:])

  def target_pixels(self, view, x):
    """VideoMAE's target: the clip's pixels in [0, 1] (the reference un-normalises the input)."""
    del x
    return view

  def to_unit(self, pixels):
    return pixels

  def embed_modalities(self, params, model_state, video=None, audio=None, text=None):
    if video is None or audio is not None or text is not None:
      raise ValueError("videomae embeds video only")
    return {"video_features": self.embed(params, model_state, video)}
