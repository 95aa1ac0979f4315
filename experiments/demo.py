"""The `make demo` sweep: grid16's 16 Fashion-MNIST cells at a CPU budget (Figures 4/5, Tables 6/7).

  python -m sweeps.launch --config experiments/demo.py --workdir runs/demo --parallel 2

alpha 1, 0.75, 0.5, 0.25 x resolution 56, 48, 40, 32 (rho = 1, 6/7, 5/7, 4/7), each trained for 180 steps of 128
images (23,040 images, about 0.4 epoch: linear warmup over 45 steps to lr 0.1, then cosine decay to 0) and
evaluated on the whole 10,000-image test split. Where a cell's time goes and the ranking against the budget:
docs/demo.md. `make demo` runs two cells at a time (--parallel 2), which
overlaps one cell's single-threaded phases (data loading, compilation) with the other's training. The same
cells at mnet_jax/configs/fashion_mnist.py's longer budget: `python -m sweeps.launch --config experiments/grid16.py`;
any other sweep at this budget: its argument `budget=demo` (experiments/sweep_base.py).
It takes no config argument (`experiments/demo.py:anything` is a one-line error).
"""

from experiments import sweep_base

ALPHAS = sweep_base.ALPHAS
RESOLUTIONS = sweep_base.resolutions("data=fashion_mnist")


def get_config(arg=None):
  sweep_base.no_argument(arg, "experiments/demo.py")
  return sweep_base.base_config("data=fashion_mnist,budget=demo")


def sweep(add, arg=None):
  sweep_base.no_argument(arg, "experiments/demo.py")
  for alpha in ALPHAS:
    for resolution in RESOLUTIONS:
      add(alpha=alpha, resolution=resolution)
