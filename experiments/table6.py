"""Table 6 (width multiplier): alpha 1, 0.75, 0.5, 0.25 at the top resolution (224 on ImageNet, 56 on Fashion-MNIST).

  python -m sweeps.launch --config experiments/table6.py:data=imagenet --workdir runs/table6
"""

from experiments import sweep_base


def get_config(arg=None):
  return sweep_base.base_config(arg)


def sweep(add, arg=None):
  for alpha in sweep_base.ALPHAS:
    add(alpha=alpha, resolution=sweep_base.resolutions(arg)[0])
