r"""Evaluating official Keras MobileNet V1 weights (converted by mnet_jax.convert) on ImageNet validation.

  python -m mnet_jax.convert --keras-h5 mobilenet_1_0_224_tf.h5 --alpha 1.0 --resolution 224 --out runs/keras/1.0-224
  python -m mnet_jax.evaluate --workdir runs/keras/1.0-224

The converter writes this config (for its alpha and resolution) as the workdir's config.json. It is
mnet_jax/configs/imagenet.py with the Keras layout spelled out (the model's defaults, fixed here so that a change of
defaults cannot silently break the imported weights: ReLU6, BN epsilon 1e-3, stride-2 stem, widths
max(int(d * alpha), 8), which equal Keras's int(d * alpha) for alpha >= 0.25; 1000 classes come from the
dataset and inputs are scaled to [-1, 1] by the pipeline) and the
evaluation protocol of the published numbers: tfds `imagenet2012` split `validation`, all 50,000 images (the last
batch padded and masked, none dropped), the central 87.5 % of the shorter side resized to the resolution.
"""

from mnet_jax.configs import common, imagenet


def get_config(arg=None):
  arg = common.parse_arg(arg, alpha=1.0, resolution=224)
  config = imagenet.get_config(f"alpha={arg.alpha},resolution={arg.resolution}")
  config.variant = "standard"
  config.model.stem_stride = 2
  config.model.activation = "relu6"
  config.model.bn_epsilon = 1e-3
  config.model.bn_momentum = 0.99
  config.model.dropout_rate = 0.001
  config.model.min_depth = 8
  config.data.name = "imagenet2012"
  config.data.eval_split = "validation"
  config.data.eval_crop_fraction = 0.875
  config.data.max_eval_examples = None
  config.batch_size = 200  # divides 50,000 (no padding on the full split) and 1, 2, 4 or 8 devices
  config.wandb.group = "keras_pretrained"
  return config
