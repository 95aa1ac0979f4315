"""Keras' ImageNet MobileNets (keras.applications MobileNet, MobileNetV2, MobileNetV3Large / Small) -> a workdir
this project restores like any other.

Each family (mnet_jax.models) builds the network its Keras class builds (same widths, activations, BatchNorm
epsilon 1e-3, TF 'SAME' padding, 1000 classes, inputs on the [-1, 1] scale: a V3 file saved with
`include_preprocessing` holds no weights for its Rescaling layer, which maps [0, 255] there), so converting is
renaming and reshaping, by the family's `keras_names()`:

  conv layer + its BatchNorm     -> <layer>: kernel, bn/scale, bn/bias; batch_stats <layer>/bn/mean, bn/var
  depthwise kernel (k, k, C, 1)  -> (k, k, 1, C)
  squeeze-excite's two 1x1 convs -> <layer>/reduce, <layer>/expand (kernel (1, 1, C, S) -> (C, S), bias)
  1x1 conv or Dense on the pooled vector (V3's conv_2, the classifier) -> Dense kernel (C, K), bias

V1's names: conv1 -> stem, conv_dw_N / conv_pw_N -> blockN_dw / blockN_pw, conv_preds -> classifier. V2's: Conv1,
block_N_expand / _depthwise / _project (block 0: expanded_conv_...), Conv_1 -> head, predictions. V3's: conv,
expanded_conv_N_expand / _depthwise / _squeeze_excite_conv(_1) / _project, conv_1 -> head, conv_2 -> head_fc,
logits -> classifier.

    python -m mnet_jax.convert --keras-h5 mobilenet_1_0_224_tf.h5 --alpha 1.0 --resolution 224 --out DIR
    python -m mnet_jax.convert --model mobilenet_v3_large --keras-h5 F.weights.h5 --alpha 0.75 --resolution 224 ...

writes DIR/config.json (mnet_jax/configs/imagenet_eval.py for that cell and family) and the variables as checkpoint
step 0 in DIR/checkpoints, so `python -m mnet_jax.evaluate --workdir DIR` evaluates it like any other run. A file
without the top (no classifier) is refused unless `--fresh-head`: then the fc layers it lacks (the classifier, V3's
head_fc) start from the module's initialisation, for fine-tuning. In Python, `convert_keras_model(model, alpha,
resolution, out, model_name=...)` does the same from a Keras model object (Keras 2 or 3) and
`variables_from_keras_model(model, alpha, model_name=...)` returns the plain {'params', 'batch_stats'} dict.

Three HDF5 layouts are read: what Keras 2 `save_weights` wrote (the official files: top-level `layer_names`,
datasets `conv_dw_1/conv_dw_1/depthwise_kernel:0`), a whole model saved as .h5 (the same under `model_weights`),
and Keras 3's `.weights.h5` (`layers/<key>/vars/<i>`, the layer name in an attribute). A file of another family,
alpha or number of classes is refused in one line naming the layer, before anything is written.
"""

import os

import numpy as np

from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax import models
from mnet_jax.models.mobilenet_v1 import STEM_CHANNELS
from mnet_jax.models.spec import check_alpha, check_resolution

IMAGENET_CLASSES = 1000
BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")  # also the order Keras keeps them in


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


def family_module(model_name, alpha, num_classes, minimalistic):
  check_alpha(alpha)
  options = models.model_options(model_name, minimalistic=minimalistic)
  return models.create(model_name, alpha, num_classes, **options)


def initial_variables(module, abstract):
  """The module's variables as a fresh run initialises them (for the fc layers a file without the top lacks), or
  their shapes (`abstract`: traced, not computed; seconds where computing them op by op took most of a minute)."""
  import jax
  import jax.numpy as jnp
  init = lambda: module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.float32))  # noqa: E731
  return jax.eval_shape(init) if abstract else jax.jit(init)()


def layer_weights(keras_weights, layer, names, source, family):
  """The arrays `names` of Keras layer `layer`; refuses a missing layer and missing or extra weights (a conv with a
  bias, say, which the family does not have: ignoring it would change the outputs)."""
  if layer not in keras_weights:
    raise ConfigError(f"{source} has no Keras layer {layer!r}; is it a Keras {family.name} (keras.applications."
                      f"{family.keras_class}) file for the same options?")
  have = keras_weights[layer]
  if sorted(have) != sorted(names):
    raise ConfigError(f"{source}: Keras layer {layer!r} has weights {', '.join(have)}; {family.name} needs exactly "
                      f"{', '.join(names)}")
  return [have[name] for name in names]


def check_shape(array, expected, layer, weight, alpha, keras_weights, source, family):
  if tuple(array.shape) == tuple(expected):
    return
  message = (f"{source}: Keras layer {layer!r} {weight} has shape {tuple(array.shape)}, but {family.name} with "
             f"alpha={alpha} needs {tuple(expected)}")
  stem = keras_weights.get("conv1", {}).get("kernel")
  if family.name == "mobilenet_v1" and stem is not None and stem.ndim == 4:
    message += f"; the file looks like alpha={stem.shape[-1] / STEM_CHANNELS:g} (conv1 has {stem.shape[-1]} filters)"
  raise ConfigError(message)


def to_variables(keras_weights, alpha, num_classes=IMAGENET_CLASSES, source="the Keras model", model_name="mobilenet_v1",
                 minimalistic=False, fresh_head=False):
  """Keras weights ({layer: {weight: array}}) -> {'params', 'batch_stats'} of family `model_name` at alpha.

  Refuses (ConfigError naming the layer) any missing layer, unused layer or shape that the family and alpha do not
  give. fresh_head: fc layers missing from a file without the top keep the module's initialisation.
  """
  import jax
  module = family_module(model_name, alpha, num_classes, minimalistic)
  family = models.family(model_name)
  layers = module.layers()
  names = family.keras_names(layers)
  shapes = jax.tree.map(np.shape, initial_variables(module, abstract=True))
  missing_fc = any(layer.kind == "fc" and names[layer.name][0] not in keras_weights for layer in layers)
  fresh = {}  # the initialised fc layers, computed once for every fc layer the file lacks
  if fresh_head and missing_fc:
    fresh = jax.tree.map(np.asarray, initial_variables(module, abstract=False)["params"])
  layer_weights(keras_weights, names[layers[0].name][0], ("kernel",), source, family)  # another family: its stem
  classifier = names[layers[-1].name][0]
  if classifier not in keras_weights and not fresh_head:
    raise ConfigError(f"{source} has no Keras layer {classifier!r} (a *_no_top.h5 file has no classifier; use the "
                      "file with the top, or --fresh-head to start the fc layers afresh for fine-tuning)")
  params, batch_stats = {}, {}

  def take(weight, array, keras_layer, shape):
    check_shape(array, shape, keras_layer, weight, alpha, keras_weights, source, family)
    return array

  for layer in layers:
    expected = shapes["params"][layer.name]
    if layer.kind == "fc":
      keras_layer, = names[layer.name]
      if fresh_head and keras_layer not in keras_weights:
        params[layer.name] = fresh[layer.name]
        continue
      kernel, bias = layer_weights(keras_weights, keras_layer, ("kernel", "bias"), source, family)
      kernel = kernel[0, 0] if kernel.ndim == 4 and kernel.shape[:2] == (1, 1) else kernel
      params[layer.name] = {"kernel": take("kernel", kernel, keras_layer, expected["kernel"]),
                            "bias": take("bias", bias, keras_layer, expected["bias"])}
    elif layer.kind == "squeeze_excite":
      params[layer.name] = {}
      for part, keras_layer in zip(("reduce", "expand"), names[layer.name]):
        kernel, bias = layer_weights(keras_weights, keras_layer, ("kernel", "bias"), source, family)
        kernel = kernel[0, 0] if kernel.ndim == 4 and kernel.shape[:2] == (1, 1) else kernel
        params[layer.name][part] = {"kernel": take("kernel", kernel, keras_layer, expected[part]["kernel"]),
                                    "bias": take("bias", bias, keras_layer, expected[part]["bias"])}
    else:
      conv, bn = names[layer.name]
      kernel, = layer_weights(keras_weights, conv, ("kernel",), source, family)
      if layer.kind == "depthwise" and kernel.ndim == 4:
        kernel = kernel.transpose(0, 1, 3, 2)  # Keras (k, k, C, depth_multiplier=1) -> feature groups (k, k, 1, C)
      kernel = take("kernel", kernel, conv, expected["kernel"])
      gamma, beta, mean, variance = layer_weights(keras_weights, bn, BN_WEIGHTS, source, family)
      for name, array in zip(BN_WEIGHTS, (gamma, beta, mean, variance)):
        take(name, array, bn, expected["bn"]["scale"])
      params[layer.name] = {"kernel": kernel, "bn": {"scale": gamma, "bias": beta}}
      batch_stats[layer.name] = {"bn": {"mean": mean, "var": variance}}
  used = {name for pair in names.values() for name in pair}
  unused = sorted(set(keras_weights) - used)
  if unused:
    raise ConfigError(f"{source} has Keras layers with weights that {model_name} does not have: {', '.join(unused)}")
  return {"params": params, "batch_stats": batch_stats}


def variables_from_keras_model(keras_model, alpha, num_classes=IMAGENET_CLASSES, model_name="mobilenet_v1",
                               minimalistic=False, fresh_head=False):
  """The {'params', 'batch_stats'} of family `model_name` at alpha holding a Keras model's weights."""
  return to_variables(weights_of_model(keras_model), alpha, num_classes, f"Keras model {keras_model.name!r}",
                      model_name, minimalistic, fresh_head)


def variables_from_h5(path, alpha, num_classes=IMAGENET_CLASSES, model_name="mobilenet_v1", minimalistic=False,
                      fresh_head=False):
  """The {'params', 'batch_stats'} of family `model_name` at alpha holding the weights of a Keras .h5 file."""
  return to_variables(read_h5(path), alpha, num_classes, repr(path), model_name, minimalistic, fresh_head)


# Writing a workdir -------------------------------------------------------------------------------


def eval_config(alpha, resolution, data_dir=None, model_name="mobilenet_v1", minimalistic=False):
  from mnet_jax.configs import imagenet_eval
  config = imagenet_eval.get_config(f"alpha={alpha},resolution={resolution}")
  config.model.name = model_name
  config.model.minimalistic = minimalistic
  if data_dir is not None and not os.path.isdir(data_dir):
    raise ConfigError(f"--data-dir {data_dir!r} is not a directory")
  config.data.data_dir = None if data_dir is None else os.path.abspath(data_dir)
  return config


def write_workdir(variables, alpha, resolution, out, source, data_dir=None, model_name="mobilenet_v1",
                  minimalistic=False):
  """Writes out/config.json (mnet_jax/configs/imagenet_eval.py for the cell and family, reading imagenet2012 from
  tfds's `data_dir`, None for tfds's default) and `variables` as checkpoint step 0."""
  import jax
  import jax.numpy as jnp
  from mnet_jax import checkpoint, workdir as workdir_lib
  check_alpha(alpha)
  check_resolution(resolution)
  for taken in ("checkpoints", "metrics.jsonl"):
    if os.path.exists(os.path.join(out, taken)):
      raise ConfigError(f"--out {out!r} already holds {taken}; convert into a new directory")
  config = eval_config(alpha, resolution, data_dir, model_name, minimalistic)
  os.makedirs(out, exist_ok=True)
  workdir_lib.write_config(config, out)
  variables = jax.tree.map(jnp.asarray, variables)
  checkpoint.save_variables(out, variables, step=0, meta={"converted_from": source, "train_seconds": 0.0})
  return out


def convert_h5(path, alpha, resolution, out, data_dir=None, model_name="mobilenet_v1", minimalistic=False,
               fresh_head=False):
  """A Keras .h5 file of family `model_name` -> workdir `out` (config.json + checkpoint step 0)."""
  check_resolution(resolution)
  variables = variables_from_h5(path, alpha, IMAGENET_CLASSES, model_name, minimalistic, fresh_head)
  return write_workdir(variables, alpha, resolution, out, os.path.abspath(path), data_dir, model_name, minimalistic)


def convert_keras_model(keras_model, alpha, resolution, out, data_dir=None, model_name="mobilenet_v1",
                        minimalistic=False, fresh_head=False):
  """A Keras model object of family `model_name` -> workdir `out` (config.json + checkpoint step 0)."""
  check_resolution(resolution)
  variables = variables_from_keras_model(keras_model, alpha, IMAGENET_CLASSES, model_name, minimalistic, fresh_head)
  return write_workdir(variables, alpha, resolution, out, f"Keras model {keras_model.name!r}", data_dir, model_name,
                       minimalistic)


@exit_on_config_error
def main(argv=None):
  parser = OneLineArgumentParser(
      prog="python -m mnet_jax.convert",
      description="Convert a Keras MobileNet V1, V2 or V3 .h5 file into a workdir that mnet_jax.evaluate restores.")
  parser.add_argument("--keras-h5", required=True, help="e.g. mobilenet_1_0_224_tf.h5 or a .weights.h5")
  parser.add_argument("--model", default="mobilenet_v1", help=f"the file's family: {', '.join(models.NAMES)}")
  parser.add_argument("--minimalistic", action="store_true", help="a V3 minimalistic file")
  parser.add_argument("--alpha", type=float, required=True, help="width multiplier the file was trained with")
  parser.add_argument("--resolution", type=int, required=True, help="input resolution to evaluate at")
  parser.add_argument("--out", required=True, help="workdir to create")
  parser.add_argument("--fresh-head", action="store_true",
                      help="accept a file without the top: its missing fc layers start from initialisation")
  parser.add_argument("--data-dir", help="tfds data_dir holding the prepared imagenet2012 (default: tfds's own)")
  args = parser.parse_args(argv)
  from mnet_jax import process
  process.setup_process()
  convert_h5(args.keras_h5, args.alpha, args.resolution, args.out, args.data_dir, args.model, args.minimalistic,
             args.fresh_head)
  print(f"wrote {args.out}/config.json and checkpoint step 0; evaluate with: "
        f"python -m mnet_jax.evaluate --workdir {args.out}")


if __name__ == "__main__":
  main()
