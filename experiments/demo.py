"""The `make demo` sweep: 9 of grid16's 16 Fashion-MNIST cells, sized to finish in under 20 minutes on a 2-core CPU.

  python -m sweeps.launch --config experiments/demo.py --workdir runs/demo

alpha 1, 0.5, 0.25 x resolution 56, 40, 32 (rho = 1, 5/7, 4/7; grid16's other alpha and rho fill in between),
each trained for 60 steps of 128 images (7,680 images, about an eighth of an epoch: linear warmup over 6 steps,
then cosine decay to 0) and evaluated on the whole 10,000-image test split. The full 16 cells at this budget
take about twice as long on this CPU. `make demo` runs two cells at a time (--parallel 2), which overlaps one
cell's single-threaded phases (data loading, compilation) with the other's training: `python -m sweeps.launch --config experiments/grid16.py` with
`--config.num_steps=60 --config.optim.warmup_steps=6` (grid16's own default is experiments/fashion_mnist.py's 3
epochs per cell).
"""

from experiments import grids

ALPHAS = (1.0, 0.5, 0.25)
RESOLUTIONS = (56, 40, 32)


def get_config(arg=None):
  config = grids.base_config("data=fashion_mnist")
  config.num_steps = 60
  config.optim.warmup_steps = 6
  config.log_every_steps = 20
  config.checkpoint_every_steps = 30
  return config


def sweep(add):
  for alpha in ALPHAS:
    for resolution in RESOLUTIONS:
      add(alpha=alpha, resolution=resolution)
