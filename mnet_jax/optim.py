"""Training recipes: optimizer, learning-rate schedule, weight decay, label smoothing and EMA, as config fields.

`recipe_config(name)` returns the `config.optim` fields of a named recipe; `build(optim_config, ...)` turns
any such fields into an optax transformation and its schedule. The recipes:

- `paper`: what TF-Slim trained MobileNet V1 with: RMSprop (decay 0.9, momentum 0.9, epsilon 1.0 inside the
  square root and the mean-square accumulator starting at 1, as TF does), learning rate 0.01 per 32 images
  multiplied by 0.94 every 2 epochs, L2 weight decay 4e-5 on conv and FC kernels but not on depthwise
  filters, BatchNorm or biases, no label smoothing.
- `modern`: SGD with Nesterov momentum (or AdamW), linear warmup then cosine decay, label smoothing 0.1,
  an EMA of the weights.

The learning rate is `base_learning_rate * batch_size / base_batch_size`.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import traverse_util

from mnet_jax.errors import ConfigError

OPTIMIZERS = ("rmsprop", "sgd_nesterov", "adamw")
SCHEDULES = ("exponential", "warmup_cosine")


def recipe_config(name):
  """The `config.optim` fields of recipe `name` ('paper' or 'modern')."""
  common = dict(
      base_batch_size=256, warmup_epochs=0.0, warmup_steps=None, momentum=0.9, rmsprop_decay=0.9,
      rmsprop_epsilon=1.0, rmsprop_initial_scale=1.0, decay_rate=0.94, decay_epochs=2.0, decay_steps=None,
      weight_decay_depthwise=False, label_smoothing=0.0, ema_decay=0.0)
  recipes = {
      "paper": dict(optimizer="rmsprop", schedule="exponential", base_learning_rate=0.01, base_batch_size=32,
                    weight_decay=4e-5),
      "modern": dict(optimizer="sgd_nesterov", schedule="warmup_cosine", base_learning_rate=0.1, warmup_epochs=5.0,
                     weight_decay=4e-5, label_smoothing=0.1, ema_decay=0.9998),
  }
  if name not in recipes:
    raise ConfigError(f"recipe={name!r} is unknown; allowed: {', '.join(recipes)}")
  fields = {**common, **recipes[name]}
  config = ml_collections.ConfigDict()
  for key, value in fields.items():
    if value is None:
      value = ml_collections.config_dict.placeholder(int)
    setattr(config, key, value)
  return config


def to_steps(name, epochs, steps, steps_per_epoch):
  """A duration given in epochs, or in steps when `steps` is set."""
  if steps is not None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
      raise ConfigError(f"{name}_steps={steps!r} is not allowed: it must be an integer >= 0")
    return steps
  if not isinstance(epochs, (int, float)) or not math.isfinite(epochs) or epochs < 0:
    raise ConfigError(f"{name}_epochs={epochs!r} is not allowed: it must be a number >= 0")
  return int(round(epochs * steps_per_epoch))


def learning_rate(optim_config, batch_size):
  lr = optim_config.base_learning_rate * batch_size / optim_config.base_batch_size
  if not math.isfinite(lr) or lr <= 0:
    raise ConfigError(f"optim.base_learning_rate={optim_config.base_learning_rate!r} gives a learning rate of {lr}; "
                      "it must be > 0")
  return lr


def schedule(optim_config, batch_size, steps_per_epoch, total_steps):
  """Linear warmup from 0, then exponential (staircase) or cosine decay."""
  if optim_config.schedule not in SCHEDULES:
    raise ConfigError(f"optim.schedule={optim_config.schedule!r} is unknown; allowed: {', '.join(SCHEDULES)}")
  peak = learning_rate(optim_config, batch_size)
  warmup = min(to_steps("optim.warmup", optim_config.warmup_epochs, optim_config.warmup_steps, steps_per_epoch),
               total_steps)
  if optim_config.schedule == "warmup_cosine":
    after = optax.cosine_decay_schedule(peak, max(total_steps - warmup, 1))
  else:
    every = to_steps("optim.decay", optim_config.decay_epochs, optim_config.decay_steps, steps_per_epoch)
    after = optax.exponential_decay(peak, max(every, 1), optim_config.decay_rate, staircase=True)
  if warmup == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def decay_mask(params, include_depthwise):
  """True for conv and FC kernels (and depthwise filters only if asked); False for BatchNorm and biases."""
  flat = traverse_util.flatten_dict(params)
  mask = {path: path[-1] == "kernel" and (include_depthwise or not path[-2].endswith("_dw")) for path in flat}
  return traverse_util.unflatten_dict(mask)


def build(optim_config, batch_size, steps_per_epoch, total_steps):
  """(optax transformation, learning-rate schedule) for these fields."""
  if optim_config.optimizer not in OPTIMIZERS:
    raise ConfigError(f"optim.optimizer={optim_config.optimizer!r} is unknown; allowed: {', '.join(OPTIMIZERS)}")
  lr = schedule(optim_config, batch_size, steps_per_epoch, total_steps)
  wd = optim_config.weight_decay
  mask = lambda params: decay_mask(params, optim_config.weight_decay_depthwise)  # noqa: E731
  if optim_config.optimizer == "adamw":  # decoupled weight decay, scaled by the learning rate
    return optax.adamw(lr, weight_decay=wd, mask=mask), lr
  if optim_config.optimizer == "rmsprop":
    step = optax.rmsprop(lr, decay=optim_config.rmsprop_decay, eps=optim_config.rmsprop_epsilon,
                         initial_scale=optim_config.rmsprop_initial_scale, eps_in_sqrt=True,
                         momentum=optim_config.momentum)
  else:
    step = optax.sgd(lr, momentum=optim_config.momentum, nesterov=True)
  # L2 regularisation as TF-Slim and PyTorch SGD do it: wd * w is added to the gradient.
  return optax.chain(optax.add_decayed_weights(wd, mask), step), lr


def cross_entropy(logits, labels, num_classes, label_smoothing):
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def ema_update(ema, new, decay, step):
  """TF's ExponentialMovingAverage with num_updates: the decay ramps up as min(decay, (1 + t) / (10 + t))."""
  decay = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  return jax.tree.map(lambda e, n: decay * e + (1.0 - decay) * n, ema, new)
