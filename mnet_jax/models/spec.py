"""The layer spec every family gives, and the checks and width rules the families share.

A network is a tuple of `Layer`s in order: convs (kind 'conv', 'depthwise', 'pointwise') and squeeze-excite layers
run on the feature map; global average pooling follows the last of them; then the 'fc' layers (1x1 convs on the
pooled vector, with bias and no BatchNorm), dropout before the last one, the classifier. One spec drives the Flax
module (network.py), the counter (mnet_jax/count.py), the Keras import and the PyTorch twin.
"""

import dataclasses
import math

from mnet_jax.errors import ConfigError

MIN_RESOLUTION = 32  # every family downsamples by 32
KINDS = ("conv", "depthwise", "pointwise", "squeeze_excite", "fc")
# A layer's activation after its BatchNorm (fc: after its bias). '' stands for the model's `activation` field (V1's).
ACTIVATIONS = ("relu", "relu6", "hard_swish", "linear")


@dataclasses.dataclass(frozen=True)
class Layer:
  """One weight layer. kind: 'conv' (full k x k), 'depthwise', 'pointwise' (1x1), 'squeeze_excite' or 'fc'.

  A depthwise layer's `groups` are its (kernel size, channels) pairs in channel order, one for a vanilla depthwise
  conv, several for MixConv; its `kernel_size` is the largest of them. Other kinds have no groups.
  conv, depthwise and pointwise layers have no bias and are followed by BatchNorm and `activation`.
  `residual_from` names an earlier layer whose input is added to this layer's output (an inverted residual).
  A pointwise layer with `pointwise_groups` g > 1 is a grouped 1x1 conv (input and output channels in g contiguous
  groups, group i's outputs read group i's inputs: C_in * C_out / g weights); `shuffle` permutes its output's g
  groups after the activation (ShuffleNet's channel shuffle: channel i * C/g + j goes to j * g + i).
  A depthwise layer with `factorization` 'spatial' is a k x 1 depthwise conv carrying the vertical stride, then a
  1 x k one carrying the horizontal stride, with one BatchNorm and activation after the pair.
  A 'squeeze_excite' layer (in = out channels) pools, 1x1 conv to `se_channels` + ReLU, 1x1 conv back +
  hard-sigmoid, and scales its input by the result; both convs have biases.
  """

  name: str
  kind: str
  kernel_size: int
  stride: int
  in_channels: int
  out_channels: int
  groups: tuple = ()
  activation: str = ""
  residual_from: str = ""
  se_channels: int = 0
  pointwise_groups: int = 1
  shuffle: bool = False
  factorization: str = ""


def check_alpha(alpha):
  if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
    raise ConfigError(f"alpha={alpha!r} is not allowed: the width multiplier must be a finite number > 0")


def check_resolution(resolution):
  if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < MIN_RESOLUTION:
    raise ConfigError(
        f"resolution={resolution!r} is not allowed: it must be an integer >= {MIN_RESOLUTION} "
        "(every MobileNet downsamples by 32)")


def check_choice(name, value, allowed):
  if value not in allowed:
    raise ConfigError(f"{name}={value!r} is unknown; allowed: {', '.join(map(str, allowed))}")


def check_positive_int(name, value):
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"{name}={value!r} is not allowed: it must be an integer >= 1")


def make_divisible(value, divisor=8):
  """TF-Slim's and Keras' width rule: the nearest multiple of divisor (at least divisor), never below 90 %."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


def bottleneck(prefix, in_channels, expanded, out_channels, kernel_size, stride, activation, se_channels=0):
  """An inverted residual block (V2, V3): 1x1 expand (absent when expanded == in_channels), k x k depthwise,
  squeeze-excite (when se_channels), linear 1x1 project; the block's input is added when stride is 1 and the
  widths match."""
  layers = []
  if expanded != in_channels:
    layers.append(Layer(f"{prefix}_expand", "pointwise", 1, 1, in_channels, expanded, activation=activation))
  layers.append(Layer(f"{prefix}_dw", "depthwise", kernel_size, stride, expanded, expanded,
                      ((kernel_size, expanded),), activation=activation))
  if se_channels:
    layers.append(Layer(f"{prefix}_se", "squeeze_excite", 1, 1, expanded, expanded, se_channels=se_channels))
  residual = layers[0].name if stride == 1 and in_channels == out_channels else ""
  layers.append(Layer(f"{prefix}_project", "pointwise", 1, 1, expanded, out_channels, activation="linear",
                      residual_from=residual))
  return layers
