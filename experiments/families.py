"""MobileNet V1, V2 and V3 side by side at matched resolutions: one curve per family on accuracy against
Mult-Adds, params and latency (`python -m sweeps.report`).

  python -m sweeps.launch --config experiments/families.py --workdir runs/families --parallel 2    # Fashion-MNIST
  python -m sweeps.launch --config experiments/families.py:data=imagenet --workdir runs/families   # ImageNet

Cells (48), each at the grid's four resolutions (ImageNet 224, 192, 160, 128; Fashion-MNIST 56, 48, 40, 32): V1 at
alpha 1.0, 0.75, 0.5, 0.25 (grid16's cells); V2 at alpha 1.0, 0.75, 0.5, 0.35; V3 Large and V3 Small at alpha 1.0
and 0.75. Every cell has the same recipe: on Fashion-MNIST the demo's CPU budget (experiments/demo.py: 180 steps of
128 images, warm-up 45 steps, lr 0.1), elsewhere the dataset's base config (sweep_base.base_config). A cell's
family is its `model.name`; the report keys its curves, trend check and Spearman by it.
"""

from experiments import sweep_base

FAMILIES = (("mobilenet_v1", sweep_base.ALPHAS), ("mobilenet_v2", (1.0, 0.75, 0.5, 0.35)),
            ("mobilenet_v3_large", (1.0, 0.75)), ("mobilenet_v3_small", (1.0, 0.75)))


def get_config(arg=None):
  return sweep_base.base_config(arg, default_budget="demo")  # on Fashion-MNIST; budget=full for the dataset config's


def sweep(add, arg=None):
  resolutions = sweep_base.resolutions(arg)
  for name, alphas in FAMILIES:
    for alpha in alphas:
      for resolution in resolutions:
        add(alpha=alpha, resolution=resolution, **{"model.name": name})
