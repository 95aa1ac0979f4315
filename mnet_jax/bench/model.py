"""The model a benchmark times: a Flax module of any family (through the registry, mnet_jax.models) and its layer
spec, from which the PyTorch twin is built."""

import dataclasses
from typing import Any

from mnet_jax import models

NUM_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class Model:
  """`module`: a Flax module called as `module.apply(variables, images, train=...)` on NHWC images;
  `layers`: its layer spec (a tuple of `Layer`s ending with the classifier), which the PyTorch twin is built from."""

  module: Any
  layers: tuple

  @property
  def num_classes(self):
    return self.layers[-1].out_channels

  def twin_options(self):
    """What the PyTorch twin takes beside the layers: the module's BatchNorm momentum and epsilon, its dropout rate
    and the activation of the layers whose own is '' (V1's `activation` field)."""
    module = self.module
    return {"bn_momentum": module.bn_momentum, "bn_epsilon": module.bn_epsilon, "dropout_rate": module.dropout_rate,
            "activation": getattr(module, "activation", "")}


def build(name, alpha, dtype="float32", num_classes=NUM_CLASSES, **options):
  """Family `name` (models.NAMES) at width `alpha` and compute `dtype`; `options`: the module's other fields
  (stem_stride, kernels, depthwise_impl; V1's kernel_sizes, kernel_split; V3's minimalistic). A bad option raises
  ConfigError here, before any work."""
  module = models.create(name, alpha, num_classes, dtype=dtype, **options)
  return Model(module, module.layers())


def mobilenet_v1(alpha, dtype="float32", num_classes=NUM_CLASSES, **options):
  """MobileNet V1 (build's `mobilenet_v1`)."""
  return build("mobilenet_v1", alpha, dtype, num_classes, **options)
