"""Table 6 (width multiplier): alpha 1, 0.75, 0.5, 0.25 at the top resolution (224 on ImageNet, 56 on Fashion-MNIST).

  python -m sweeps.launch --config experiments/table6.py:data=imagenet --workdir runs/table6
"""

from experiments import grids


def get_config(arg=None):
  return grids.base_config(arg)


def sweep(add, arg=None):
  for alpha in grids.ALPHAS:
    add(alpha=alpha, resolution=grids.resolutions(arg)[0])
