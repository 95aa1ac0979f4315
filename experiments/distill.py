"""grid16's 16 alpha x resolution cells as students of one finished run (docs/training.md#distillation).

  python -m sweeps.launch --config experiments/grid16.py --workdir runs/grid16     # the reference grid (teacher)
  python -m sweeps.launch --config experiments/distill.py:teacher=runs/grid16/a1_r56 --workdir runs/distill

At the demo's CPU budget, the students of `make demo`'s widest cell, each comparing with its runs/demo twin:

  python -m sweeps.launch --config experiments/distill.py:teacher=runs/demo/a1_r56,budget=demo --workdir runs/distill

The teacher is any finished run on the same dataset; the example is the reference grid's alpha-1, top-resolution
cell. The argument also takes grid16's `data=`, `runlocal` and `budget=`, and the loss's `temperature=` and `weight=`; every
cell keeps grid16's recipe and budget, so each compares with its grid16 twin.
"""

import os

from experiments import sweep_base
from mnet_jax import metrics
from mnet_jax.configs import common
from mnet_jax.errors import ConfigError


def parse(arg):
  defaults = common.base_config(1.0, 224, "paper").distill
  parsed = common.parse_arg(arg, teacher="", data="fashion_mnist", runlocal=False, budget="full",
                            temperature=defaults.temperature, weight=defaults.weight)
  sweep_base.parse(sweep_base.grid_arg(parsed))  # an unknown dataset or budget: one line
  return parsed


def get_config(arg=None):
  parsed = parse(arg)
  grid_arg = sweep_base.grid_arg(parsed)
  if not parsed.teacher or metrics.final_metrics(parsed.teacher) is None:
    top = sweep_base.resolutions(grid_arg)[0]
    raise ConfigError(f"teacher={parsed.teacher!r} is not a finished run; train one with `python -m sweeps.launch "
                      f"--config experiments/grid16.py:{grid_arg} --workdir runs/grid16` and pass "
                      f"teacher=runs/grid16/a1_r{top}")
  config = sweep_base.base_config(grid_arg)
  config.distill.teacher = os.path.abspath(parsed.teacher)
  config.distill.temperature = parsed.temperature
  config.distill.weight = parsed.weight
  return config


def sweep(add, arg=None):
  for alpha in sweep_base.ALPHAS:
    for resolution in sweep_base.resolutions(sweep_base.grid_arg(parse(arg))):
      add(alpha=alpha, resolution=resolution)
