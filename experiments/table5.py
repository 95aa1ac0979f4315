"""Table 5: narrow (alpha 0.75) vs shallow (alpha 1 without the five 14x14x512 blocks), at the top resolution.

  python -m sweeps.launch --config experiments/table5.py:data=imagenet --workdir runs/table5
"""

from experiments import sweep_base


def get_config(arg=None):
  return sweep_base.base_config(arg)


def sweep(add, arg=None):
  top = sweep_base.resolutions(arg)[0]
  add(alpha=0.75, resolution=top, variant="standard")
  add(alpha=1.0, resolution=top, variant="shallow")
