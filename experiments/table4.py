"""Table 4: depthwise separable vs full 3x3 convolutions, alpha 1 at the top resolution.

  python -m sweeps.launch --config experiments/table4.py:data=imagenet --workdir runs/table4
"""

from experiments import sweep_base


def get_config(arg=None):
  return sweep_base.base_config(arg)


def sweep(add, arg=None):
  for variant in ("standard", "full_conv"):
    add(alpha=1.0, resolution=sweep_base.resolutions(arg)[0], variant=variant)
