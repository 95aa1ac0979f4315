"""The model a benchmark times: a Flax module and its layer spec, from which the PyTorch twin is built."""

import dataclasses
from typing import Any

from mnet_jax.models.mobilenet_v1 import MobileNetV1

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


def mobilenet_v1(alpha, dtype="float32", num_classes=NUM_CLASSES, **options):
  """MobileNet V1 at width `alpha` and compute `dtype`; `options`: the module's other fields (stem_stride,
  kernels, depthwise_impl, kernel_sizes, kernel_split). A bad option raises ConfigError here, before any work."""
  module = MobileNetV1(alpha=alpha, num_classes=num_classes, dtype=dtype, **options)
  return Model(module, module.layers())
