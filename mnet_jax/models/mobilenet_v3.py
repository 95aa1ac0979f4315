"""MobileNet V3 Large and Small (Howard et al. 2019, arXiv:1905.02244), Tables 1 and 2, as Keras
(keras.applications.MobileNetV3Large / Small) builds them.

The stem's 16 channels are not scaled by alpha; each block's output is `make_divisible(c alpha)` and its expanded
width `make_divisible(input x ratio)`, with the ratio the table's expansion over its input at alpha 1 (72/16, 2.3,
...) as Keras writes it; squeeze-excite squeezes to `make_divisible(expanded / 4)`. The head: a 1x1 conv to
`make_divisible(6 x last block's width)` + BatchNorm + activation, global average pool, a 1x1 conv with bias and no
BatchNorm (fc 'head_fc', 1280 for Large, 1024 for Small, widened only for alpha > 1) + activation, dropout, the
classifier. `minimalistic`: no squeeze-excite, ReLU instead of hard-swish, 3x3 depthwise kernels everywhere.
BatchNorm epsilon 1e-3, momentum 0.999; TF 'SAME' padding (Keras' stride-2 `correct_pad` + 'valid').
"""

import flax.linen as nn

from mnet_jax.models.network import apply_layers, checked_call_options
from mnet_jax.models.spec import Layer, bottleneck, check_alpha, check_choice, check_positive_int, make_divisible

STEM_CHANNELS = 16
# Tables 1 (Large) and 2 (Small): (kernel, expanded width, output, squeeze-excite, activation, stride); RE = ReLU,
# HS = hard-swish.
LARGE = (
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)
SMALL = (
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)
SIZES = {"large": (LARGE, 1280), "small": (SMALL, 1024)}  # the table and the head_fc width (Small: not the paper's
#                                                            1280; TF-Slim and Keras use 1024)
LAST_CONV_EXPANSION = 6
SE_RATIO = 0.25


def architecture(size="large", alpha=1.0, num_classes=1000, minimalistic=False, stem_stride=2):
  """Table 1 or 2 as a tuple of Layers for width multiplier alpha; blocks are numbered from 0 as Keras numbers
  them."""
  check_choice("size", size, tuple(SIZES))
  check_alpha(alpha)
  check_positive_int("num_classes", num_classes)
  check_choice("minimalistic", minimalistic, (False, True))
  check_choice("stem_stride", stem_stride, (1, 2))
  table, head_width = SIZES[size]
  hard_swish = "relu" if minimalistic else "hard_swish"
  channels, paper_channels = STEM_CHANNELS, STEM_CHANNELS
  layers = [Layer("stem", "conv", 3, stem_stride, 3, channels, activation=hard_swish)]
  for number, (kernel, expanded, out, se, activation, stride) in enumerate(table):
    width = make_divisible(channels * (expanded / paper_channels))
    se_channels = make_divisible(width * SE_RATIO) if se and not minimalistic else 0
    out_channels = make_divisible(out * alpha)
    layers += bottleneck(f"block{number}", channels, width, out_channels, 3 if minimalistic else kernel, stride,
                         "relu" if activation == "RE" else hard_swish, se_channels)
    channels, paper_channels = out_channels, out
  last_conv = make_divisible(channels * LAST_CONV_EXPANSION)
  head = make_divisible(head_width * alpha) if alpha > 1 else head_width
  layers.append(Layer("head", "pointwise", 1, 1, channels, last_conv, activation=hard_swish))
  layers.append(Layer("head_fc", "fc", 1, 1, last_conv, head, activation=hard_swish))
  layers.append(Layer("classifier", "fc", 1, 1, head, num_classes, activation="linear"))
  return tuple(layers)


def keras_names(layers):
  """Our layer name -> its Keras layers (conv, BatchNorm; squeeze-excite's two convs; an fc alone), in Keras 3's
  MobileNetV3Large / Small."""
  names = {"stem": ("conv", "conv_bn"), "head": ("conv_1", "conv_1_bn"), "head_fc": ("conv_2",),
           "classifier": ("logits",)}
  for layer in layers:
    if layer.name.startswith("block"):
      number, part = layer.name[len("block"):].split("_")
      prefix = f"expanded_conv_{number}_" if number != "0" else "expanded_conv_"
      if part == "se":
        names[layer.name] = (f"{prefix}squeeze_excite_conv", f"{prefix}squeeze_excite_conv_1")
      else:
        keras_part = {"expand": "expand", "dw": "depthwise", "project": "project"}[part]
        names[layer.name] = (prefix + keras_part, f"{prefix}{keras_part}_bn")
  return names


class MobileNetV3(nn.Module):
  """MobileNet V3 Large or Small (`size`). Call with NHWC images (any resolution >= 32, 3 channels, on the [-1, 1]
  scale: Keras' `include_preprocessing` layer maps [0, 255] there); returns float32 logits."""

  size: str = "large"
  alpha: float = 1.0
  num_classes: int = 1000
  minimalistic: bool = False
  stem_stride: int = 2
  dropout_rate: float = 0.2  # Keras' default
  bn_momentum: float = 0.999
  bn_epsilon: float = 1e-3
  dtype: str = "float32"
  kernels: str = "auto"
  depthwise_impl: str = "auto"

  def layers(self):
    return architecture(self.size, self.alpha, self.num_classes, self.minimalistic, self.stem_stride)

  @nn.compact
  def __call__(self, images, train=False):
    dtype, kernels, depthwise_impl = checked_call_options(images, self.dtype, self.dropout_rate, self.kernels,
                                                          self.depthwise_impl)
    return apply_layers(self.layers(), images, train, activation="relu", dropout_rate=self.dropout_rate,
                        bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, dtype=dtype, kernels=kernels,
                        depthwise_impl=depthwise_impl)
