r"""Fashion-MNIST on this CPU: 28-px grayscale images resized to `resolution`, read offline from Debian's files.

  python -m mnet_jax.main --config mnet_jax/configs/fashion_mnist.py:alpha=0.5,resolution=32 --workdir /tmp/w

The stem has stride 1 (the small-image option: a stride-2 stem leaves a 32-px image 1x1 before the last
blocks) and the recipe is the modern one with a one-cycle-like schedule: SGD-Nesterov, short linear warmup
to lr 0.2 at batch 128, cosine decay to 0, horizontal flips. `runlocal` shrinks everything for a smoke test.

Why 0.2 and not the 0.1 that trains the same network in PyTorch: every conv is followed by BatchNorm, so a
conv's effective step is about lr / |w|^2, and this model's He-normal init (fan_in, scale 2) starts each kernel
~2.4x the norm of PyTorch's default init: at 0.1 it learns several times slower (docs/training.md). This
command's accuracy and time: the README's results table.
"""

from mnet_jax.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, alpha=0.5, resolution=32, recipe="modern", runlocal=False)
  config = common.base_config(arg.alpha, arg.resolution, arg.recipe)
  config.model.stem_stride = 1
  config.model.bn_momentum = 0.9
  config.data.name = "fashion_mnist"
  config.batch_size = 128
  config.num_epochs = 3
  config.optim.base_batch_size = 128
  config.optim.base_learning_rate = 0.2
  config.optim.warmup_epochs = 0.6
  config.optim.weight_decay = 5e-5
  config.optim.label_smoothing = 0.0
  config.optim.ema_decay = 0.0
  config.log_every_steps = 50
  config.checkpoint_every_steps = 200
  if arg.runlocal:
    config.alpha = 0.25
    config.batch_size = 32
    config.num_steps = 20
    config.data.max_train_examples = 1024
    config.data.max_eval_examples = 256
    config.log_every_steps = 5
    config.checkpoint_every_steps = 10
  return config
