"""MobileNet V1 (Howard et al. 2017, arXiv:1704.04861), Table 1, as a Flax Linen module.

`architecture()` turns Table 1 into a tuple of `Layer`s for a given width multiplier and variant.
The module below is built from it, and so is the Mult-Adds/params counter (`mnet_jax.count`):
one source of truth for both.

Depthwise kernels (MixConv, Tan & Le 2019, arXiv:1907.09595): `kernel_sizes=(k,)` gives a k x k depthwise conv in
every block (3 is the paper's); several sizes give a MixConv layer in every block: the channels split into
contiguous groups in the order given (`kernel_split`: 'equal', the remainder to the first group as the reference
code does, or 'exponential', group i of g getting C >> i channels and the last the rest), each group its own
depthwise conv with TF 'SAME' padding, the outputs concatenated.

Ablations of the separable block (docs/ablations.md): `pointwise_groups=g` makes every pointwise conv but block 1's
a grouped 1x1 conv with g groups (ShuffleNet, Zhang et al. 2017, arXiv:1707.01083, leaves its first 1x1 whole);
`channel_shuffle` shuffles the g groups after each grouped 1x1 that a depthwise conv follows (blocks 2-12);
`depthwise_factorization='spatial'` makes each k x k depthwise conv a k x 1 one (vertical stride) then a 1 x k one
(horizontal stride), BatchNorm and activation once after the pair.
"""

import dataclasses

import flax.linen as nn

from mnet_jax.errors import ConfigError
from mnet_jax.models.network import apply_layers, checked_call_options
from mnet_jax.models.spec import (  # noqa: F401 (check_* and MIN_RESOLUTION are imported from here elsewhere)
    MIN_RESOLUTION, Layer, check_alpha, check_choice, check_positive_int, check_resolution)
from mnet_jax.ops.batchnorm import ACTIVATION_UPPER

# Table 1: a 3x3 stride-2 conv to 32 channels, then 13 depthwise-separable blocks given as
# (pointwise output channels, depthwise stride), global average pool, fully connected.
# Table 1 prints the last depthwise stride as "s2"; its input and output are both 7x7, so it is 1.
STEM_CHANNELS = 32
BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),  # the five 14x14x512 blocks
    (1024, 2),
    (1024, 1),
)
SHALLOW_REMOVED_BLOCKS = (7, 8, 9, 10, 11)  # Table 5's "Shallow MobileNet" drops the five 14x14x512 blocks

VARIANTS = ("standard", "shallow", "full_conv")
KERNEL_SPLITS = ("equal", "exponential")
FACTORIZATIONS = ("none", "spatial")
ACTIVATIONS = tuple(ACTIVATION_UPPER)


def scaled_channels(channels, alpha, min_depth):
  return max(int(channels * alpha), min_depth)


def check_kernel_sizes(kernel_sizes):
  """The depthwise kernel sizes as a tuple: odd integers >= 3, each once, at least one."""
  sizes = tuple(kernel_sizes) if isinstance(kernel_sizes, (tuple, list)) else (kernel_sizes,)
  allowed = "one or more different odd integers >= 3, e.g. (3,) or (3, 5, 7, 9)"
  if not sizes:
    raise ConfigError(f"kernel_sizes={kernel_sizes!r} is empty; allowed: {allowed}")
  for k in sizes:
    if isinstance(k, bool) or not isinstance(k, int) or k < 3 or k % 2 == 0:
      raise ConfigError(f"kernel_sizes={kernel_sizes!r} has kernel size {k!r}; allowed: {allowed}")
  if len(set(sizes)) != len(sizes):
    raise ConfigError(f"kernel_sizes={kernel_sizes!r} repeats a size; allowed: {allowed}")
  return sizes


def split_channels(channels, num_groups, split):
  """Channels per group: 'equal' (the remainder to the first group) or 'exponential' (C >> i, the last the rest)."""
  if split == "equal":
    sizes = [channels // num_groups] * num_groups
    sizes[0] += channels - sum(sizes)
  else:
    sizes = [channels >> i for i in range(1, num_groups)]
    sizes.append(channels - sum(sizes))
  return sizes


def depthwise_groups(name, channels, kernel_sizes, split):
  groups = tuple(zip(kernel_sizes, split_channels(channels, len(kernel_sizes), split)))
  if any(c == 0 for _, c in groups):
    raise ConfigError(
        f"kernel_sizes={kernel_sizes!r} with kernel_split={split!r} leaves a group of {name} ({channels} channels) "
        f"empty; allowed: fewer kernel sizes, or a larger alpha or min_depth")
  return groups


def check_pointwise_groups(layers, groups, channel_shuffle):
  """The grouped layers' channels must split into `groups` equal parts; a shuffle needs groups > 1."""
  if channel_shuffle and groups == 1:
    raise ConfigError("channel_shuffle=True is not allowed with pointwise_groups=1 (one group has nothing to "
                      "shuffle); allowed: pointwise_groups > 1, or channel_shuffle=False")
  for layer in layers:
    if layer.pointwise_groups > 1 and (layer.in_channels % groups or layer.out_channels % groups):
      raise ConfigError(f"pointwise_groups={groups} does not divide {layer.name}'s channels ({layer.in_channels} in, "
                        f"{layer.out_channels} out); allowed: a common divisor of every grouped layer's channels, "
                        f"or another alpha")


def architecture(alpha=1.0, variant="standard", num_classes=1000, min_depth=8, stem_stride=2, kernel_sizes=(3,),
                 kernel_split="equal", pointwise_groups=1, channel_shuffle=False, depthwise_factorization="none"):
  """Table 1 as a tuple of Layers, with channels scaled by alpha (TF-Slim's max(int(d*alpha), min_depth)); the
  pointwise groups, channel shuffle and depthwise factorization of the module docstring."""
  check_alpha(alpha)
  check_choice("variant", variant, VARIANTS)
  check_positive_int("num_classes", num_classes)
  check_positive_int("min_depth", min_depth)
  check_choice("stem_stride", stem_stride, (1, 2))
  kernel_sizes = check_kernel_sizes(kernel_sizes)
  check_choice("kernel_split", kernel_split, KERNEL_SPLITS)
  if variant == "full_conv" and kernel_sizes != (3,):
    raise ConfigError(f"kernel_sizes={kernel_sizes!r} is not allowed with variant='full_conv' (it has no depthwise "
                      "layers); allowed: (3,)")
  check_choice("depthwise_factorization", depthwise_factorization, FACTORIZATIONS)
  check_positive_int("pointwise_groups", pointwise_groups)
  check_choice("channel_shuffle", channel_shuffle, (False, True))
  if variant == "full_conv" and (depthwise_factorization != "none" or pointwise_groups != 1):
    raise ConfigError("variant='full_conv' has no depthwise or pointwise layers; allowed with it: "
                      "pointwise_groups=1 and depthwise_factorization='none'")
  if depthwise_factorization == "spatial" and len(kernel_sizes) > 1:
    raise ConfigError(f"depthwise_factorization='spatial' takes one kernel size, not kernel_sizes={kernel_sizes!r}; "
                      "allowed: e.g. (3,)")
  factorization = "" if depthwise_factorization == "none" else depthwise_factorization
  channels = scaled_channels(STEM_CHANNELS, alpha, min_depth)
  layers = [Layer("stem", "conv", 3, stem_stride, 3, channels)]
  for number, (depth, stride) in enumerate(BLOCKS, start=1):
    if variant == "shallow" and number in SHALLOW_REMOVED_BLOCKS:
      continue
    out_channels = scaled_channels(depth, alpha, min_depth)
    if variant == "full_conv":
      layers.append(Layer(f"block{number}_conv", "conv", 3, stride, channels, out_channels))
    else:
      name = f"block{number}_dw"
      layers.append(Layer(name, "depthwise", max(kernel_sizes), stride, channels, channels,
                          depthwise_groups(name, channels, kernel_sizes, kernel_split), factorization=factorization))
      groups = pointwise_groups if number > 1 else 1
      layers.append(Layer(f"block{number}_pw", "pointwise", 1, 1, channels, out_channels, pointwise_groups=groups,
                          shuffle=channel_shuffle and groups > 1))
    channels = out_channels
  # A shuffle only where a depthwise conv follows: before the pooling it would mix nothing.
  last_pw = max(i for i, layer in enumerate(layers) if layer.kind in ("pointwise", "conv"))
  layers[last_pw] = dataclasses.replace(layers[last_pw], shuffle=False)
  check_pointwise_groups(layers, pointwise_groups, channel_shuffle)
  layers.append(Layer("classifier", "fc", 1, 1, channels, num_classes))
  return tuple(layers)


class MobileNetV1(nn.Module):
  """MobileNet V1. Call with NHWC images (any resolution >= 32, 3 channels); returns float32 logits.

  Parameters are float32 whatever the compute `dtype` ('float32' or 'bfloat16').
  `stem_stride=1` is for small images (e.g. 32 px): it keeps 4x more positions through the net.
  `kernels` ('auto', 'portable' or 'cpu', ops/__init__.py) chooses how the layers compute; `depthwise_impl`
  overrides the depthwise conv's form alone (ops/depthwise.py; 'auto': the kernel set's).
  """

  alpha: float = 1.0
  num_classes: int = 1000
  variant: str = "standard"
  min_depth: int = 8
  stem_stride: int = 2
  activation: str = "relu6"
  dropout_rate: float = 0.001
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  dtype: str = "float32"
  kernels: str = "auto"
  depthwise_impl: str = "auto"
  kernel_sizes: tuple = (3,)  # depthwise kernel sizes: one for a vanilla k x k, several for MixConv
  kernel_split: str = "equal"  # MixConv's channel split: equal or exponential
  pointwise_groups: int = 1  # grouped 1x1 convs in blocks 2-13
  channel_shuffle: bool = False  # shuffle the groups after each grouped 1x1 before a depthwise conv
  depthwise_factorization: str = "none"  # 'spatial': k x 1 then 1 x k depthwise convs

  def layers(self):
    return architecture(self.alpha, self.variant, self.num_classes, self.min_depth, self.stem_stride,
                        self.kernel_sizes, self.kernel_split, self.pointwise_groups, self.channel_shuffle,
                        self.depthwise_factorization)

  @nn.compact
  def __call__(self, images, train=False):
    check_choice("activation", self.activation, ACTIVATIONS)
    dtype, kernels, depthwise_impl = checked_call_options(images, self.dtype, self.dropout_rate, self.kernels,
                                                          self.depthwise_impl)
    return apply_layers(self.layers(), images, train, activation=self.activation, dropout_rate=self.dropout_rate,
                        bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, dtype=dtype, kernels=kernels,
                        depthwise_impl=depthwise_impl)


def keras_names(layers):
  """Our layer name -> its Keras layers (conv, BatchNorm; the classifier alone), in keras.applications.MobileNet."""
  names = {"stem": ("conv1", "conv1_bn"), "classifier": ("conv_preds",)}
  for layer in layers:
    if layer.name.startswith("block"):
      number, part = layer.name[len("block"):].split("_")
      names[layer.name] = (f"conv_{part}_{number}", f"conv_{part}_{number}_bn")
  return names
