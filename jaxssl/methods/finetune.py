"""Supervised training of a classifier on an encoder: fine-tuning, or linear probing with the
encoder frozen. The downstream step after pretraining: `config.init_from` names the pretraining
run's workdir or export, whose encoder (params and BatchNorm statistics) this run starts from;
empty, it trains the same network from scratch (the baseline a pretrained encoder must beat).

Network: encoder -> [BatchNorm without affine, MAE's linear-probe head] -> Dense(num_classes),
cross-entropy on one augmented view (config.augment.view) per image. With
`finetune.freeze_encoder` the encoder runs in inference mode (its BatchNorm statistics stay those
of pretraining) under stop_gradient, so only the head learns. `classify` gives the held-out
logits that the image evaluator scores as classifier/top1.
"""
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from jaxssl import augment, models
from jaxssl.models import heads


class ClassifierNet(nn.Module):
  encoder: nn.Module
  num_classes: int
  freeze_encoder: bool
  head_batchnorm: bool

  @nn.compact
  def __call__(self, x, train):
    features = self.encoder(x, train=train and not self.freeze_encoder)
    head_input = jax.lax.stop_gradient(features) if self.freeze_encoder else features
    head_input = head_input.astype(jnp.float32)
    if self.head_batchnorm:
      head_input = nn.BatchNorm(use_running_average=not train, use_scale=False, use_bias=False,
                                momentum=0.9, epsilon=1e-6, name="head_bn")(head_input)
    return features, heads.LinearClassifier(self.num_classes, name="classifier")(head_input)


class Method:

  def __init__(self, config, data_info):
    args = config.finetune
    if not data_info.num_classes:
      raise ValueError("finetune needs labelled data (the dataset has no classes)")
    if args.freeze_encoder and config.optimizer.weight_decay:
      raise ValueError("finetune.freeze_encoder: set optimizer.weight_decay=0 (decay would still "
                       "shrink the frozen encoder's weights)")
    self.config, self.image_size = config, data_info.image_size
    self.net = ClassifierNet(models.build_encoder(config.model), data_info.num_classes,
                             args.freeze_encoder, args.head_batchnorm)

  def init(self, rng):
    x = jnp.zeros((2, self.image_size, self.image_size, 3), jnp.float32)
    return self.net.init(rng, x, train=False)

  def _input(self, images):
    return augment.model_input(images, self.config.input_norm)

  def loss(self, params, model_state, batch, rng, step):
    del step
    (view,) = augment.simclr_views(rng, batch["image"], out_size=self.image_size,
                                   cfg_list=[self.config.augment.view])
    (_, logits), new_state = self.net.apply({"params": params, **model_state}, self._input(view),
                                            train=True, mutable=["batch_stats"])
    logits = logits.astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, ({"train_acc": accuracy}, {**model_state, **new_state})

  def _apply(self, params, model_state, images):
    x = self._input(augment.center_view(images, out_size=self.image_size))
    return self.net.apply({"params": params, **model_state}, x, train=False)

  def embed(self, params, model_state, images):
    return self._apply(params, model_state, images)[0].astype(jnp.float32)

  def classify(self, params, model_state, images):
    return self._apply(params, model_state, images)[1].astype(jnp.float32)
