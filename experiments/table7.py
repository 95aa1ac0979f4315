"""Table 7 (resolution multiplier): alpha 1 at 224/192/160/128 on ImageNet, 56/48/40/32 on Fashion-MNIST.

  python -m sweeps.launch --config experiments/table7.py:data=imagenet --workdir runs/table7
"""

from experiments import sweep_base


def get_config(arg=None):
  return sweep_base.base_config(arg)


def sweep(add, arg=None):
  for resolution in sweep_base.resolutions(arg):
    add(alpha=1.0, resolution=resolution)
