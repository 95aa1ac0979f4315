"""Official Keras MobileNet V1 ImageNet weights -> a workdir this project restores like any other.

Keras publishes ImageNet weights for exactly the paper's 16 cells,
`mobilenet_{1_0,7_5,5_0,2_5}_{224,192,160,128}_tf.h5` (alpha 1.0, 0.75, 0.5, 0.25 at resolution 224 ... 128). The network is the one `MobileNetV1` builds with its
defaults (ReLU6, BN epsilon 1e-3, TF 'SAME' padding, 1000 classes, inputs in [-1, 1]), so converting is renaming
and reshaping:

  Keras conv1, conv1_bn            -> stem (kernel, bn)
  Keras conv_dw_N, conv_dw_N_bn    -> blockN_dw (kernel (3, 3, C, 1) -> (3, 3, 1, C))
  Keras conv_pw_N, conv_pw_N_bn    -> blockN_pw
  Keras conv_preds (1x1 conv)      -> classifier (Dense: kernel (1, 1, C, K) -> (C, K), bias)
  BN gamma, beta, moving_mean, moving_variance -> params bn/scale, bn/bias, batch_stats bn/mean, bn/var

    python -m mnet_jax.convert --keras-h5 mobilenet_1_0_224_tf.h5 --alpha 1.0 --resolution 224 --out DIR

writes DIR/config.json (mnet_jax/configs/imagenet_eval.py for that cell) and the variables as checkpoint step 0 in
DIR/checkpoints, so `python -m mnet_jax.evaluate --workdir DIR` evaluates it like any other run. In Python,
`convert_keras_model(model, alpha, resolution, out)` does the same from a Keras model object (Keras 2 or 3) and
`variables_from_keras_model(model, alpha)` returns the plain {'params', 'batch_stats'} dict.

Three HDF5 layouts are read: what Keras 2 `save_weights` wrote (the official files: top-level `layer_names`,
datasets `conv_dw_1/conv_dw_1/depthwise_kernel:0`), a whole model saved as .h5 (the same under `model_weights`),
and Keras 3's `.weights.h5` (`layers/<key>/vars/<i>`, the layer name in an attribute).
"""

import os

import numpy as np

from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.models.mobilenet_v1 import BLOCKS, STEM_CHANNELS, MobileNetV1, check_alpha, check_resolution

IMAGENET_CLASSES = 1000
BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")  # also the order Keras keeps them in
CLASSIFIER = "conv_preds"


def keras_layer_names():
  """Our conv layer name -> (Keras conv layer, Keras BN layer), in network order."""
  names = {"stem": ("conv1", "conv1_bn")}
  for number in range(1, len(BLOCKS) + 1):
    names[f"block{number}_dw"] = (f"conv_dw_{number}", f"conv_dw_{number}_bn")
    names[f"block{number}_pw"] = (f"conv_pw_{number}", f"conv_pw_{number}_bn")
  return names


def short_weight_name(name):
  """'conv_dw_1/depthwise_kernel:0' (Keras 2) or 'kernel' (Keras 3) -> 'kernel'; 'conv1_bn/gamma:0' -> 'gamma'."""
  name = name.split("/")[-1].split(":")[0]
  return "kernel" if name == "depthwise_kernel" else name


def decode(value):
  return value.decode("utf8") if isinstance(value, bytes) else str(value)


# Reading -----------------------------------------------------------------------------------------


def read_h5(path):
  """{Keras layer name: {weight name: float32 array}} from a Keras MobileNet .h5 file (any of the three layouts)."""
  import h5py
  if not os.path.isfile(path):
    raise ConfigError(f"--keras-h5 {path!r} is not a file")
  try:
    with h5py.File(path, "r") as f:
      if "layer_names" not in f.attrs and "model_weights" in f:
        return read_legacy_group(f["model_weights"])
      if "layer_names" in f.attrs:
        return read_legacy_group(f)
      if "layers" in f:
        return read_keras3_group(f["layers"])
  except OSError as e:
    raise ConfigError(f"cannot read {path!r} as HDF5: {e}") from None
  except KeyError as e:  # a layer or weight listed in the file's attributes but not stored
    raise ConfigError(f"{path!r} is damaged or not a Keras weights file: {e}") from None
  raise ConfigError(f"{path!r} is not a Keras weights file (no 'layer_names' attribute, 'model_weights' or 'layers' "
                    "group)")


def read_legacy_group(group):
  """The Keras 2 layout: attribute layer_names; per layer, attribute weight_names and datasets at those paths."""
  weights = {}
  for layer in map(decode, group.attrs["layer_names"]):
    layer_group = group[layer]
    names = [decode(n) for n in layer_group.attrs.get("weight_names", [])]
    if names:
      weights[layer] = {short_weight_name(n): np.asarray(layer_group[n], np.float32) for n in names}
  return weights


def read_keras3_group(layers):
  """The Keras 3 `.weights.h5` layout: layers/<key>/vars/<0, 1, ...>, the Keras layer name in vars' 'name'."""
  weights = {}
  for key in layers:
    variables = layers[key].get("vars")
    if variables is None or not len(variables):
      continue
    arrays = [np.asarray(variables[str(i)], np.float32) for i in range(len(variables))]
    layer = decode(variables.attrs.get("name", key))
    names = BN_WEIGHTS if len(arrays) == len(BN_WEIGHTS) else ("kernel", "bias")[:len(arrays)]
    weights[layer] = dict(zip(names, arrays))
  return weights


def weights_of_model(keras_model):
  """{Keras layer name: {weight name: float32 array}} from a Keras model object (Keras 2 or 3)."""
  weights = {}
  for layer in keras_model.layers:
    arrays = layer.get_weights()
    if arrays:
      weights[layer.name] = {short_weight_name(w.name): np.asarray(a, np.float32)
                             for w, a in zip(layer.weights, arrays)}
  return weights


# Converting --------------------------------------------------------------------------------------


def expected_shapes(alpha, num_classes):
  """The variables' shapes of MobileNetV1(alpha) (they do not depend on the resolution)."""
  import jax
  import jax.numpy as jnp
  model = MobileNetV1(alpha=alpha, num_classes=num_classes)
  images = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  abstract = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  return jax.tree.map(lambda s: tuple(s.shape), abstract)


def layer_weights(keras_weights, layer, names, source):
  """The arrays `names` of Keras layer `layer`; refuses a missing layer and missing or extra weights (a conv with a
  bias, say, which MobileNet V1 does not have: ignoring it would change the outputs)."""
  if layer not in keras_weights:
    hint = " (a *_no_top.h5 file has no classifier; use mobilenet_A_R_tf.h5)" if layer == CLASSIFIER else ""
    raise ConfigError(f"{source} has no Keras layer {layer!r}{hint}; is it a Keras MobileNet V1 (keras.applications."
                      "MobileNet) file?")
  have = keras_weights[layer]
  if sorted(have) != sorted(names):
    raise ConfigError(f"{source}: Keras layer {layer!r} has weights {', '.join(have)}; MobileNet V1 needs exactly "
                      f"{', '.join(names)}")
  return [have[name] for name in names]


def check_shape(array, expected, layer, weight, alpha, keras_weights, source):
  if tuple(array.shape) == tuple(expected):
    return
  message = (f"{source}: Keras layer {layer!r} {weight} has shape {tuple(array.shape)}, but alpha={alpha} needs "
             f"{tuple(expected)}")
  stem = keras_weights.get("conv1", {}).get("kernel")
  if stem is not None and stem.ndim == 4:
    message += f"; the file looks like alpha={stem.shape[-1] / STEM_CHANNELS:g} (conv1 has {stem.shape[-1]} filters)"
  raise ConfigError(message)


def to_variables(keras_weights, alpha, num_classes=IMAGENET_CLASSES, source="the Keras model"):
  """Keras MobileNet weights ({layer: {weight: array}}) -> {'params', 'batch_stats'} of MobileNetV1(alpha).

  Refuses (ConfigError naming the layer) any missing layer, unused layer or shape that alpha does not give.
  """
  check_alpha(alpha)
  shapes = expected_shapes(alpha, num_classes)
  params, batch_stats = {}, {}
  for ours, (conv, bn) in keras_layer_names().items():
    kernel, = layer_weights(keras_weights, conv, ("kernel",), source)
    if ours.endswith("_dw") and kernel.ndim == 4:
      kernel = kernel.transpose(0, 1, 3, 2)  # Keras (3, 3, C, depth_multiplier=1) -> feature groups (3, 3, 1, C)
    check_shape(kernel, shapes["params"][ours]["kernel"], conv, "kernel", alpha, keras_weights, source)
    gamma, beta, mean, variance = layer_weights(keras_weights, bn, BN_WEIGHTS, source)
    for name, array in zip(BN_WEIGHTS, (gamma, beta, mean, variance)):
      check_shape(array, shapes["params"][ours]["bn"]["scale"], bn, name, alpha, keras_weights, source)
    params[ours] = {"kernel": kernel, "bn": {"scale": gamma, "bias": beta}}
    batch_stats[ours] = {"bn": {"mean": mean, "var": variance}}
  kernel, bias = layer_weights(keras_weights, CLASSIFIER, ("kernel", "bias"), source)
  if kernel.ndim == 4 and kernel.shape[:2] == (1, 1):
    kernel = kernel[0, 0]
  check_shape(kernel, shapes["params"]["classifier"]["kernel"], CLASSIFIER, "kernel", alpha, keras_weights, source)
  check_shape(bias, shapes["params"]["classifier"]["bias"], CLASSIFIER, "bias", alpha, keras_weights, source)
  params["classifier"] = {"kernel": kernel, "bias": bias}
  used = {name for pair in keras_layer_names().values() for name in pair} | {CLASSIFIER}
  unused = sorted(set(keras_weights) - used)
  if unused:
    raise ConfigError(f"{source} has Keras layers with weights that MobileNet V1 does not have: {', '.join(unused)}")
  return {"params": params, "batch_stats": batch_stats}


def variables_from_keras_model(keras_model, alpha, num_classes=IMAGENET_CLASSES):
  """The {'params', 'batch_stats'} of MobileNetV1(alpha) holding a Keras MobileNet model's weights."""
  return to_variables(weights_of_model(keras_model), alpha, num_classes, source=f"Keras model {keras_model.name!r}")


def variables_from_h5(path, alpha, num_classes=IMAGENET_CLASSES):
  """The {'params', 'batch_stats'} of MobileNetV1(alpha) holding the weights of a Keras MobileNet .h5 file."""
  return to_variables(read_h5(path), alpha, num_classes, source=repr(path))


# Writing a workdir -------------------------------------------------------------------------------


def eval_config(alpha, resolution, data_dir=None):
  from mnet_jax.configs import imagenet_eval
  config = imagenet_eval.get_config(f"alpha={alpha},resolution={resolution}")
  if data_dir is not None and not os.path.isdir(data_dir):
    raise ConfigError(f"--data-dir {data_dir!r} is not a directory")
  config.data.data_dir = None if data_dir is None else os.path.abspath(data_dir)
  return config


def write_workdir(variables, alpha, resolution, out, source, data_dir=None):
  """Writes out/config.json (mnet_jax/configs/imagenet_eval.py for the cell, reading imagenet2012 from tfds's
  `data_dir`, None for tfds's default) and `variables` as checkpoint step 0."""
  import jax
  import jax.numpy as jnp
  from mnet_jax import checkpoint, workdir as workdir_lib
  check_alpha(alpha)
  check_resolution(resolution)
  for taken in ("checkpoints", "metrics.jsonl"):
    if os.path.exists(os.path.join(out, taken)):
      raise ConfigError(f"--out {out!r} already holds {taken}; convert into a new directory")
  os.makedirs(out, exist_ok=True)
  workdir_lib.write_config(eval_config(alpha, resolution, data_dir), out)
  variables = jax.tree.map(jnp.asarray, variables)
  checkpoint.save_variables(out, variables, step=0, meta={"converted_from": source, "train_seconds": 0.0})
  return out


def convert_h5(path, alpha, resolution, out, data_dir=None):
  """A Keras MobileNet .h5 file -> workdir `out` (config.json + checkpoint step 0)."""
  check_resolution(resolution)
  variables = variables_from_h5(path, alpha)
  return write_workdir(variables, alpha, resolution, out, os.path.abspath(path), data_dir)


def convert_keras_model(keras_model, alpha, resolution, out, data_dir=None):
  """A Keras MobileNet model object -> workdir `out` (config.json + checkpoint step 0)."""
  check_resolution(resolution)
  variables = variables_from_keras_model(keras_model, alpha)
  return write_workdir(variables, alpha, resolution, out, f"Keras model {keras_model.name!r}", data_dir)


@exit_on_config_error
def main(argv=None):
  parser = OneLineArgumentParser(
      prog="python -m mnet_jax.convert",
      description="Convert an official Keras MobileNet V1 .h5 file into a workdir that mnet_jax.evaluate restores.")
  parser.add_argument("--keras-h5", required=True, help="e.g. mobilenet_1_0_224_tf.h5")
  parser.add_argument("--alpha", type=float, required=True, help="width multiplier the file was trained with")
  parser.add_argument("--resolution", type=int, required=True, help="input resolution to evaluate at")
  parser.add_argument("--out", required=True, help="workdir to create")
  parser.add_argument("--data-dir", help="tfds data_dir holding the prepared imagenet2012 (default: tfds's own)")
  args = parser.parse_args(argv)
  from mnet_jax import process
  process.setup_process()
  convert_h5(args.keras_h5, args.alpha, args.resolution, args.out, args.data_dir)
  print(f"wrote {args.out}/config.json and checkpoint step 0; evaluate with: "
        f"python -m mnet_jax.evaluate --workdir {args.out}")


if __name__ == "__main__":
  main()
