"""MobileNet V2 (Sandler et al. 2018, arXiv:1801.04381), Table 2, as Keras (keras.applications.MobileNetV2)
builds it.

Widths follow TF-Slim's and Keras' rule (spec.make_divisible): the stem `make_divisible(32 alpha)`, each block's
output `make_divisible(int(c alpha))`, its expansion t times its (rounded) input. The last 1x1 conv keeps 1280
channels for alpha <= 1 and is widened to `make_divisible(1280 alpha)` above. ReLU6 everywhere but the linear
projections; BatchNorm epsilon 1e-3, momentum 0.999; TF 'SAME' padding (what Keras' stride-2 `correct_pad` + 'valid'
amounts to); the classifier on the pooled 1280 features.
"""

import flax.linen as nn

from mnet_jax.models.network import apply_layers, checked_call_options
from mnet_jax.models.spec import Layer, bottleneck, check_alpha, check_choice, check_positive_int, make_divisible

# Table 2: a 3x3 stride-2 conv to 32 channels, then bottlenecks (expansion t, output channels c, repeats n,
# stride s of the first), a 1x1 conv to 1280, global average pool, classifier.
STEM_CHANNELS = 32
BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
LAST_CHANNELS = 1280


def architecture(alpha=1.0, num_classes=1000, stem_stride=2):
  """Table 2 as a tuple of Layers for width multiplier alpha; blocks are numbered from 0 as Keras numbers them."""
  check_alpha(alpha)
  check_positive_int("num_classes", num_classes)
  check_choice("stem_stride", stem_stride, (1, 2))
  channels = make_divisible(STEM_CHANNELS * alpha)
  layers = [Layer("stem", "conv", 3, stem_stride, 3, channels, activation="relu6")]
  number = 0
  for t, c, n, s in BLOCKS:
    out_channels = make_divisible(int(c * alpha))
    for repeat in range(n):
      layers += bottleneck(f"block{number}", channels, t * channels, out_channels, 3, s if repeat == 0 else 1,
                           "relu6")
      channels, number = out_channels, number + 1
  last = make_divisible(LAST_CHANNELS * alpha) if alpha > 1 else LAST_CHANNELS
  layers.append(Layer("head", "pointwise", 1, 1, channels, last, activation="relu6"))
  layers.append(Layer("classifier", "fc", 1, 1, last, num_classes, activation="linear"))
  return tuple(layers)


def keras_names(layers):
  """Our layer name -> its Keras layers (conv, BatchNorm; the classifier alone), in Keras 3's MobileNetV2."""
  names = {"stem": ("Conv1", "bn_Conv1"), "head": ("Conv_1", "Conv_1_bn"), "classifier": ("predictions",)}
  for layer in layers:
    if layer.name.startswith("block"):
      number, part = layer.name[len("block"):].split("_")
      prefix = f"block_{number}_" if number != "0" else "expanded_conv_"
      keras_part = {"expand": "expand", "dw": "depthwise", "project": "project"}[part]
      names[layer.name] = (prefix + keras_part, f"{prefix}{keras_part}_BN")
  return names


class MobileNetV2(nn.Module):
  """MobileNet V2. Call with NHWC images (any resolution >= 32, 3 channels, Keras' [-1, 1] scale); returns float32
  logits. The fields other than alpha and num_classes mean what MobileNetV1's do."""

  alpha: float = 1.0
  num_classes: int = 1000
  stem_stride: int = 2
  dropout_rate: float = 0.0  # Keras' V2 has none
  bn_momentum: float = 0.999
  bn_epsilon: float = 1e-3
  dtype: str = "float32"
  kernels: str = "auto"
  depthwise_impl: str = "auto"

  def layers(self):
    return architecture(self.alpha, self.num_classes, self.stem_stride)

  @nn.compact
  def __call__(self, images, train=False):
    dtype, kernels, depthwise_impl = checked_call_options(images, self.dtype, self.dropout_rate, self.kernels,
                                                          self.depthwise_impl)
    return apply_layers(self.layers(), images, train, activation="relu6", dropout_rate=self.dropout_rate,
                        bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, dtype=dtype, kernels=kernels,
                        depthwise_impl=depthwise_impl)
