"""All 16 alpha x resolution cells (the paper's Figures 4 and 5; Tables 6 and 7 are its row and column).

  python -m sweeps.launch --config experiments/grid16.py --workdir runs/grid16                  # Fashion-MNIST
  python -m sweeps.launch --config experiments/grid16.py:data=imagenet --workdir runs/grid16    # ImageNet
"""

from experiments import sweep_base


def get_config(arg=None):
  return sweep_base.base_config(arg)


def sweep(add, arg=None):
  for alpha in sweep_base.ALPHAS:
    for resolution in sweep_base.resolutions(arg):
      add(alpha=alpha, resolution=resolution)
