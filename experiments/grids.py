"""What the sweep configs (table4-7, grid16) share: the base config for each dataset and the paper's grid.

Every sweep file takes the argument `data=fashion_mnist|imagenet[,runlocal]` and declares its cells with
`sweep(add, arg)`: one `add(**overrides)` per cell, over any config field (dotted names through
`add(**{"optim.base_learning_rate": 0.05})`).

Resolutions. ImageNet uses the paper's 224/192/160/128 (rho = 1, 6/7, 5/7, 4/7). Fashion-MNIST images are
28 px and the model needs >= 32 px, so its grid applies the same ratios to 56 (= 224 / 4): 56/48/40/32, the
28-px images upsampled, with the stride-1 stem of experiments/fashion_mnist.py (feature maps 56..2 px, like
ImageNet's 112..4 after its stride-2 stem, divided by two).
"""

from experiments import common, fashion_mnist, imagenet
from mnet_jax.errors import ConfigError

ALPHAS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = {"imagenet": (224, 192, 160, 128), "fashion_mnist": (56, 48, 40, 32)}
BASES = {"imagenet": imagenet, "fashion_mnist": fashion_mnist}


def parse(arg):
  parsed = common.parse_arg(arg, data="fashion_mnist", runlocal=False)
  if parsed.data not in BASES:
    raise ConfigError(f"config argument data={parsed.data!r} is unknown; allowed: {', '.join(BASES)}")
  return parsed


def base_config(arg):
  """The dataset's experiment config (experiments/fashion_mnist.py or imagenet.py) at the grid's top resolution."""
  parsed = parse(arg)
  config = BASES[parsed.data].get_config("runlocal" if parsed.runlocal else None)
  config.alpha = 1.0
  config.resolution = RESOLUTIONS[parsed.data][0]
  return config


def resolutions(arg):
  return RESOLUTIONS[parse(arg).data]
