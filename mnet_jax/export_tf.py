"""A model's layer spec and its BatchNorm-folded weights as a TensorFlow graph, converted to LiteRT (.tflite).

The graph is a TF twin of the Flax module, built layer by layer from the same spec (`model.layers()`), one builder
per layer kind (`BUILDERS`: V1's convs and classifier; V2/V3's squeeze-excite, residual adds, hard-swish and linear
activations, V3's biased head fc): a new kind of layer is one more builder. Each conv layer's BatchNorm is folded into
its kernel and a bias in float64 (w * scale / sqrt(var + eps), bias - mean * scale / sqrt(var + eps)), and the
activation follows the biased conv directly, so TFLite's converter fuses both into one CONV_2D or
DEPTHWISE_CONV_2D: the op list is that of TFLite's own MobileNets (conv, depthwise conv, mean, fully connected;
V2/V3 add ADD for residuals and MUL/ADD/RELU6 for hard-swish and squeeze-excite's gate).

jax2tf was tried first: its native serialization is deprecated, and converting its XlaCallModule to TFLite fails
on this codebase's pointwise dot ('tfl.batch_matmul' op found invalid output rank); its depthwise forms (shifted
multiply-adds, C++ kernels) would not become DEPTHWISE_CONV_2D either. Agreement with the JAX model is checked on
every export (mnet_jax/export.py), not assumed.
"""

import numpy as np

from mnet_jax.errors import ConfigError

WEIGHTS = ("per-channel", "per-tensor")  # int8 weight quantization granularity


def fold(kernel, bn_params, bn_stats, epsilon):
  """(kernel * s, bias - mean * s) with s = scale / sqrt(var + eps) per output channel (the kernel's last axis),
  in float64; the layer computes the same function as conv then inference-mode BatchNorm."""
  s = np.asarray(bn_params["scale"], np.float64) / np.sqrt(np.asarray(bn_stats["var"], np.float64) + epsilon)
  folded = np.asarray(kernel, np.float64) * s
  return folded, np.asarray(bn_params["bias"], np.float64) - np.asarray(bn_stats["mean"], np.float64) * s


def folded_layers(model, variables):
  """[(layer, [(kernel, bias), ...])] for the model's layers: the conv layers folded with their BatchNorm (one pair
  per depthwise group, each group's kernel (k, k, 1, c)), the fc layers' and squeeze-excite's (reduce, expand)
  Dense kernels and biases as they are."""
  params, stats = variables["params"], variables.get("batch_stats", {})
  result = []
  for layer in model.layers():
    p = params[layer.name]
    if layer.kind == "squeeze_excite":  # no BatchNorm: its two biased 1x1 convs as they are
      result.append((layer, [(np.asarray(p[part]["kernel"], np.float64), np.asarray(p[part]["bias"], np.float64))
                             for part in ("reduce", "expand")]))
      continue
    if layer.kind == "fc":
      result.append((layer, [(np.asarray(p["kernel"], np.float64), np.asarray(p["bias"], np.float64))]))
      continue
    bn, bn_stats = p["bn"], stats[layer.name]["bn"]
    if layer.kind == "depthwise":  # MixConv groups differ in kernel size: each folds with its channels' BN slice
      names = ["kernel"] if len(layer.groups) == 1 else [f"kernel_{i}" for i in range(len(layer.groups))]
      pairs, start = [], 0
      for name, (_, channels) in zip(names, layer.groups):
        part = slice(start, start + channels)
        pairs.append(fold(p[name], {k: np.asarray(v)[part] for k, v in bn.items()},
                          {k: np.asarray(v)[part] for k, v in bn_stats.items()}, model.bn_epsilon))
        start += channels
      result.append((layer, pairs))
    else:
      result.append((layer, [fold(p["kernel"], bn, bn_stats, model.bn_epsilon)]))
  return result


def depthwise_range_ratios(model, variables):
  """{depthwise layer name: the largest channel's max |w| over the smallest nonzero one's}, of the folded kernels.
  Folding scales each channel by its own gamma / sqrt(var + eps), so these spread; a per-tensor int8 scale leaves
  the narrowest channel about 127 / ratio levels."""
  ratios = {}
  for layer, pairs in folded_layers(model, variables):
    if layer.kind == "depthwise":
      ranges = np.concatenate([np.max(np.abs(kernel), axis=(0, 1, 2)) for kernel, _ in pairs])
      ranges = ranges[ranges > 0]
      ratios[layer.name] = float(ranges.max() / ranges.min()) if len(ranges) else 1.0
  return ratios


def _hard_sigmoid(tf, x):
  return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)  # mnet_jax.ops.activations' form


def _activation(tf, name):
  activations = {"relu6": tf.nn.relu6, "relu": tf.nn.relu, "hard_swish": lambda x: x * _hard_sigmoid(tf, x),
                 "linear": lambda x: x}
  if name not in activations:
    raise ConfigError(f"activation={name!r} has no LiteRT export; allowed: {', '.join(activations)}")
  return activations[name]


def _conv(tf, x, layer, pairs, act):
  kernel, bias = pairs[0]
  y = tf.nn.conv2d(x, tf.constant(kernel, tf.float32), strides=layer.stride, padding="SAME")
  return act(tf.nn.bias_add(y, tf.constant(bias, tf.float32)))


def _depthwise(tf, x, layer, pairs, act):
  # MixConv: each group its own depthwise conv, bias and activation (elementwise, so the same function), so that
  # each fuses into one DEPTHWISE_CONV_2D; the groups join by a SPLIT_V and a CONCATENATION.
  parts = tf.split(x, [c for _, c in layer.groups], axis=-1) if len(pairs) > 1 else [x]
  outputs = []
  for part, (kernel, bias) in zip(parts, pairs):
    y = tf.nn.depthwise_conv2d(part, tf.constant(np.transpose(kernel, (0, 1, 3, 2)), tf.float32),
                               strides=[1, layer.stride, layer.stride, 1], padding="SAME")
    outputs.append(act(tf.nn.bias_add(y, tf.constant(bias, tf.float32))))
  return tf.concat(outputs, axis=-1) if len(outputs) > 1 else outputs[0]


def _pointwise(tf, x, layer, pairs, act):
  return _conv(tf, x, layer, pairs, act)


def _fc(tf, x, layer, pairs, act):
  kernel, bias = pairs[0]
  if len(x.shape) == 4:
    x = tf.reduce_mean(x, axis=[1, 2])  # the global average pool before the first fc layer
  return act(tf.matmul(x, tf.constant(kernel, tf.float32)) + tf.constant(bias, tf.float32))


def _squeeze_excite(tf, x, layer, pairs, act):
  # As Keras' MobileNetV3 builds it: the pooled map kept 1 x 1 and two biased 1x1 CONV_2Ds, so the gate broadcasts
  # over the feature map without a reshape.
  (reduce_kernel, reduce_bias), (expand_kernel, expand_bias) = pairs
  conv = lambda v, kernel, bias: tf.nn.bias_add(  # noqa: E731
      tf.nn.conv2d(v, tf.constant(kernel[None, None], tf.float32), strides=1, padding="VALID"),
      tf.constant(bias, tf.float32))
  squeezed = tf.nn.relu(conv(tf.reduce_mean(x, axis=[1, 2], keepdims=True), reduce_kernel, reduce_bias))
  return x * _hard_sigmoid(tf, conv(squeezed, expand_kernel, expand_bias))


BUILDERS = {"conv": _conv, "depthwise": _depthwise, "pointwise": _pointwise, "fc": _fc,
            "squeeze_excite": _squeeze_excite}


def tf_function(model, variables, resolution):
  """A tf.function taking a float32 (1, resolution, resolution, 3) image batch, returning float32 logits."""
  for layer in model.layers():  # the separable block's ablations (docs/ablations.md) have no TF twin yet
    if layer.pointwise_groups > 1 or layer.factorization:
      option = (f"pointwise_groups={layer.pointwise_groups}" if layer.pointwise_groups > 1 else
                f"depthwise_factorization={layer.factorization!r}")
      raise ConfigError(f"{option} ({layer.name}) has no LiteRT export; allowed: pointwise_groups=1, "
                        "depthwise_factorization='none'")
  import tensorflow as tf
  layers = folded_layers(model, variables)
  classifier = layers[-1][0]
  # A layer's activation is its own, else the model's (V1's field); the classifier has none, as in apply_layers.
  acts = {layer.name: _activation(tf, "linear" if layer is classifier else
                                  layer.activation or getattr(model, "activation", "relu6")) for layer, _ in layers}
  kept = {layer.residual_from for layer, _ in layers if layer.residual_from}  # inputs added to a later output
  for layer, _ in layers:
    if layer.kind not in BUILDERS:
      raise ConfigError(f"layer {layer.name!r} of kind {layer.kind!r} has no LiteRT export; allowed kinds: "
                        f"{', '.join(BUILDERS)}")

  @tf.function(input_signature=[tf.TensorSpec((1, resolution, resolution, 3), tf.float32, name="images")],
               autograph=False)
  def forward(images):
    x, inputs = images, {}
    for layer, pairs in layers:
      if layer.name in kept:
        inputs[layer.name] = x
      x = BUILDERS[layer.kind](tf, x, layer, pairs, acts[layer.name])
      if layer.residual_from:
        x = x + inputs[layer.residual_from]
    return x

  return forward


def convert(model, variables, resolution, int8=False, weights="per-channel", calibration=None):
  """The .tflite bytes of the folded model: float32, or full-integer int8 (int8 weights, activations, input and
  output) calibrated on `calibration`, an iterable of float32 (1, resolution, resolution, 3) images."""
  if weights not in WEIGHTS:
    raise ConfigError(f"weights={weights!r} is unknown; allowed: {', '.join(WEIGHTS)}")
  import tensorflow as tf
  forward = tf_function(model, variables, resolution)
  holder = tf.Module()
  holder.forward = forward
  converter = tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()], holder)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if int8 else
                                         tf.lite.OpsSet.TFLITE_BUILTINS]
  if int8:
    images = list(calibration)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.asarray(image, np.float32)] for image in images)
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel = weights == "per-tensor"  # the converter's only switch for it
  return converter.convert()
