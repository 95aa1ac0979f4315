r"""ImageNet (tfds `imagenet2012`, prepared from the manual download; see docs/training.md) at any alpha and resolution.

  python -m mnet_jax.main --config mnet_jax/configs/imagenet.py:alpha=0.5,resolution=160 --workdir runs/0.5-160 \
      --config.data.manual_dir=/data/imagenet/tars --config.data.data_dir=/data/tfds

The default recipe is `paper` (TF-Slim's RMSprop setting, no weight decay on depthwise filters, inception
crops limited to >= 25% of the image area, as the paper limits small crops); `recipe=modern` switches to
SGD-Nesterov + warmup-cosine + label smoothing + EMA with the usual 8% minimum crop area.
`runlocal` shrinks everything to a few steps on a handful of images (used by the tests with mock data).
"""

from mnet_jax.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, alpha=1.0, resolution=224, recipe="paper", runlocal=False)
  config = common.base_config(arg.alpha, arg.resolution, arg.recipe)
  config.data.name = "imagenet2012"
  config.data.eval_split = "validation"
  config.data.min_area = 0.25 if arg.recipe == "paper" else 0.08
  config.batch_size = 256
  config.num_epochs = 90.0
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2000
  config.eval_every_steps = 5000
  if arg.runlocal:
    config.alpha = 0.25
    config.resolution = 32
    config.batch_size = 8
    config.num_steps = 3
    config.data.max_train_examples = 64  # 8 steps an epoch: the 3 steps and the 2 batches prefetched stay in one
    config.data.max_eval_examples = 20
    config.data.shuffle_buffer = 64
    config.log_every_steps = 1
    config.checkpoint_every_steps = 2
    config.eval_every_steps = 2
  return config
