"""MobileNet V2 over TF-Slim's published alpha x resolution grid (mnet_jax/paper_data/v2_slim_checkpoints.csv, 22
checkpoints): alpha 1.0, 0.75, 0.5, 0.35 at 224, 192, 160, 128 and 96 px, and alpha 1.4, 1.3 at 224 px.

  python -m sweeps.launch --config experiments/v2_grid.py:data=imagenet --workdir runs/v2_grid    # the 22 cells
  python -m sweeps.launch --config experiments/v2_grid.py --workdir runs/v2_grid                  # Fashion-MNIST

On Fashion-MNIST the resolutions are scaled as the V1 grid scales them (sweep_base: a quarter, 224 -> 56, ...,
128 -> 32); 96 px would be 24 px, below the 32 px every MobileNet needs, so that column is left out there (18 cells).
The training recipe is the dataset's base config (sweep_base.base_config), the same as V1's grid. On ImageNet
`python -m sweeps.report` overlays TF-Slim's published points.
"""

from experiments import sweep_base
from mnet_jax import paper
from mnet_jax.models.spec import MIN_RESOLUTION

MODEL = "mobilenet_v2"


def cells(data):
  """[(alpha, resolution)] of TF-Slim's grid on `data`, widest first, then by resolution (largest first)."""
  scale = sweep_base.RESOLUTIONS[data][0] / sweep_base.RESOLUTIONS["imagenet"][0]
  published = sorted({(float(r["alpha"]), int(r["resolution"])) for r in paper.v2_checkpoints()},
                     key=lambda cell: (-cell[0], -cell[1]))
  scaled = [(alpha, int(resolution * scale)) for alpha, resolution in published]
  return [(alpha, resolution) for alpha, resolution in scaled if resolution >= MIN_RESOLUTION]


def get_config(arg=None):
  config = sweep_base.base_config(arg)
  config.model.name = MODEL
  return config


def sweep(add, arg=None):
  for alpha, resolution in cells(sweep_base.parse(arg).data):
    add(alpha=alpha, resolution=resolution)
