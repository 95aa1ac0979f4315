"""What every experiment config shares: the argument string parser and the base config."""

import ml_collections
from ml_collections import config_dict

from mnet_jax import optim
from mnet_jax.errors import ConfigError


def parse_arg(arg, **defaults):
  """Parses a big_vision style argument "alpha=0.5,resolution=32,runlocal" against typed defaults.

  A bare key sets a boolean to True. Unknown keys and values of the wrong type are one-line errors.
  """
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, has_value, text = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ConfigError(f"config argument {key!r} is unknown; allowed: {', '.join(defaults)}")
    kind = type(defaults[key])
    if not has_value:
      if kind is not bool:
        raise ConfigError(f"config argument {key!r} needs a value ({key}=...)")
      parsed[key] = True
      continue
    try:
      if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
          raise ValueError(text)
        parsed[key] = text.lower() in ("true", "1")
      else:
        parsed[key] = kind(text)
    except ValueError:
      raise ConfigError(f"config argument {key}={text!r} is not a valid {kind.__name__}") from None
  return parsed


def base_config(alpha, resolution, recipe):
  """Fields every experiment has; each experiment file overrides a few."""
  config = ml_collections.ConfigDict()
  config.alpha = alpha
  config.resolution = resolution
  config.variant = "standard"
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  # The family (mnet_jax.models): mobilenet_v1, mobilenet_v2, mobilenet_v3_large or mobilenet_v3_small. variant,
  # min_depth, activation, kernel_sizes, kernel_split, pointwise_groups, channel_shuffle and depthwise_factorization
  # are V1's; minimalistic is V3's (no SE, ReLU, 3x3).
  config.model.name = "mobilenet_v1"
  config.model.minimalistic = False
  config.model.stem_stride = 2
  config.model.activation = "relu6"
  config.model.dropout_rate = 0.001
  config.model.bn_momentum = 0.99
  config.model.bn_epsilon = 1e-3
  config.model.dtype = "float32"
  config.model.min_depth = 8
  config.model.kernels = "auto"  # 'portable' (GPU/TPU forms) or 'cpu' (C++ kernels); auto: mnet_jax/ops/__init__.py
  config.model.depthwise_impl = config_dict.placeholder(str)  # None: the kernel set's; others for ablations
  config.model.kernel_sizes = (3,)  # depthwise kernel sizes: (k,) for k x k, several for MixConv groups
  config.model.kernel_split = "equal"  # MixConv's channel split: equal or exponential
  # The separable block's ablations (docs/ablations.md): grouped 1x1 convs in blocks 2-13, ShuffleNet's channel
  # shuffle after them, and 'spatial' (k x 1 then 1 x k) depthwise convs.
  config.model.pointwise_groups = 1
  config.model.channel_shuffle = False
  config.model.depthwise_factorization = "none"

  config.data = ml_collections.ConfigDict()
  config.data.name = "imagenet2012"
  config.data.data_dir = config_dict.placeholder(str)  # tfds data_dir; None: tfds's default (~/tensorflow_datasets)
  config.data.manual_dir = config_dict.placeholder(str)  # where imagenet2012's tar files are
  config.data.fashion_mnist_dir = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
  config.data.download = True  # let tfds download a dataset it has not prepared (needs network)
  config.data.train_split = "train"
  config.data.eval_split = "test"
  config.data.max_train_examples = config_dict.placeholder(int)
  config.data.max_eval_examples = config_dict.placeholder(int)
  config.data.flip = True
  config.data.min_area = 0.08  # inception crop: smallest fraction of the image area a crop may cover
  config.data.eval_crop_fraction = 0.875
  config.data.shuffle_buffer = 10_000
  # 'jpeg' (the dataset's own records), 'prepared_jpeg' or 'uint8_store' (a copy in data.prepared_dir written by
  # `python -m mnet_jax.prepare`); docs/input-pipeline.md.
  config.data.input_mode = "jpeg"
  config.data.prepared_dir = config_dict.placeholder(str)

  config.optim = optim.recipe_config(recipe)
  config.batch_size = 256
  config.num_epochs = 90.0
  config.num_steps = config_dict.placeholder(int)  # when set, overrides num_epochs

  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  config.eval_every_steps = config_dict.placeholder(int)  # None or 0: evaluate at the end only
  # A workdir (e.g. converted Keras weights) whose latest variables start this run; the optimizer starts fresh.
  config.init_from = config_dict.placeholder(str)
  # Knowledge distillation (docs/training.md#distillation): the loss becomes
  # (1 - weight) * cross-entropy + weight * temperature^2 * KL(teacher || student) at that temperature.
  config.distill = ml_collections.ConfigDict()
  config.distill.teacher = config_dict.placeholder(str)  # a finished run's workdir; None: no teacher
  config.distill.temperature = 4.0
  config.distill.weight = 0.5
  config.distill.teacher_checksum = config_dict.placeholder(str)  # the trainer records the teacher checkpoint's

  config.wandb = ml_collections.ConfigDict()
  config.wandb.mode = "auto"  # offline unless a W&B API key is configured; 'offline', 'online', 'disabled'
  config.wandb.project = "mnet_jax"
  config.wandb.group = config_dict.placeholder(str)
  config.wandb.name = config_dict.placeholder(str)  # None: the workdir's name
  return config
