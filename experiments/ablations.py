"""The separable block's ablations at the grid's top resolution (docs/ablations.md): grouped pointwise convs with and
without channel shuffle (ShuffleNet, arXiv:1707.01083) against narrower plain networks of the same Mult-Adds, and
spatially separable depthwise convs; with `teacher=DIR`, each plain width also as a student of that finished run.

Cells (26, 30 with a teacher), all at the top resolution (224 on ImageNet, 56 on Fashion-MNIST):
- plain V1 at every alpha of the grid (1, 0.75, 0.5, 0.25);
- alpha 1 and 0.25 with pointwise_groups g in {2, 4, 8}, each with and without channel_shuffle;
- for each of those (alpha, g), the plain network whose alpha (`matched_alpha`, 3 decimals) gives the Mult-Adds
  nearest the grouped one's: the comparison at equal complexity;
- depthwise_factorization='spatial' at every alpha of the grid;
- with teacher=DIR: the four plain widths with distill.teacher=DIR (experiments/distill.py's loss).

  python -m sweeps.launch --config experiments/ablations.py:data=fashion_mnist --workdir runs/ablations --parallel 2

`budget=demo` trains every cell at `make demo`'s CPU budget (its plain cells are then the demo's top-resolution cells).
"""

import os

from experiments import sweep_base
from mnet_jax import count
from mnet_jax.configs import common
from mnet_jax.errors import ConfigError

GROUPED_ALPHAS = (1.0, 0.25)  # the grid's widest and narrowest
GROUPS = (2, 4, 8)
NUM_CLASSES = {"fashion_mnist": 10, "imagenet": 1000}
ALPHA_STEP = 0.001  # the matched alphas' precision


def parse(arg):
  parsed = common.parse_arg(arg, data="fashion_mnist", runlocal=False, budget="full", teacher="")
  sweep_base.parse(sweep_base.grid_arg(parsed))  # an unknown dataset or budget: one line
  return parsed


def get_config(arg=None):
  parsed = parse(arg)
  if parsed.teacher and not os.path.isdir(parsed.teacher):
    raise ConfigError(f"teacher={parsed.teacher!r} is not a directory; allowed: a finished run's workdir")
  return sweep_base.base_config(sweep_base.grid_arg(parsed))


def matched_alpha(alpha, groups, resolution, num_classes):
  """The plain network's alpha (a multiple of ALPHA_STEP, at most `alpha`) whose Mult-Adds are nearest those of
  alpha with `groups` pointwise groups (the smaller alpha of two equally near)."""
  target = count.count(alpha, resolution, num_classes=num_classes, pointwise_groups=groups)["mult_adds"]
  plain = lambda a: count.count(a, resolution, num_classes=num_classes)["mult_adds"]
  low, high = 1, round(alpha / ALPHA_STEP)  # Mult-Adds rise with alpha: bisect on the steps
  while low < high:
    middle = (low + high) // 2
    if plain(middle * ALPHA_STEP) < target:
      low = middle + 1
    else:
      high = middle
  candidates = [s for s in (low - 1, low) if s >= 1]
  best = min(candidates, key=lambda s: (abs(plain(s * ALPHA_STEP) - target), s))
  return round(best * ALPHA_STEP, 3)


def sweep(add, arg=None):
  parsed = parse(arg)
  resolution = sweep_base.resolutions(sweep_base.grid_arg(parsed))[0]
  for alpha in sweep_base.ALPHAS:
    add(alpha=alpha, resolution=resolution)
  matched = []
  for alpha in GROUPED_ALPHAS:
    for groups in GROUPS:
      for shuffle in (False, True):
        add(alpha=alpha, resolution=resolution, **{"model.pointwise_groups": groups, "model.channel_shuffle": shuffle})
      narrower = matched_alpha(alpha, groups, resolution, NUM_CLASSES[parsed.data])
      if narrower not in matched and narrower not in sweep_base.ALPHAS:
        matched.append(narrower)
        add(alpha=narrower, resolution=resolution)
  for alpha in sweep_base.ALPHAS:
    add(alpha=alpha, resolution=resolution, **{"model.depthwise_factorization": "spatial"})
  if parsed.teacher:
    for alpha in sweep_base.ALPHAS:
      add(alpha=alpha, resolution=resolution, **{"distill.teacher": os.path.abspath(parsed.teacher)})
