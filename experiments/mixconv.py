"""MixConv's MobileNet V1 ablation (Tan & Le 2019, Figs. 1, 4, 6): the depthwise kernels of all 13 blocks replaced,
at alpha 1 and the grid's top resolution (224 on ImageNet, 56 on Fashion-MNIST).

Cells: vanilla k x k for k in 3..13; MixConv {3, 5, ..., 2g+1} with the equal split for g = 2..6 and the
exponential split for g = 2..4 (14 cells). `python -m sweeps.report` draws top-1 against Mult-Adds with one curve
for the vanilla kernels and one per MixConv split (the paper's Figure 4 layout) and says where accuracy peaks.

  python -m sweeps.launch --config experiments/mixconv.py:data=fashion_mnist --workdir runs/mixconv
"""

from experiments import sweep_base

VANILLA_KERNELS = (3, 5, 7, 9, 11, 13)
MIXCONV_GROUPS = {"equal": (2, 3, 4, 5, 6), "exponential": (2, 3, 4)}


def mixconv_kernels(groups):
  """MixConv's g groups: kernel sizes 3, 5, ..., 2g + 1."""
  return tuple(range(3, 2 * groups + 2, 2))


def get_config(arg=None):
  return sweep_base.base_config(arg)


def sweep(add, arg=None):
  sweep_base.parse(arg)  # the cells are the same on both datasets; the argument is checked all the same
  for k in VANILLA_KERNELS:
    add(**{"model.kernel_sizes": (k,)})
  for split, groups in MIXCONV_GROUPS.items():
    for g in groups:
      add(**{"model.kernel_sizes": mixconv_kernels(g), "model.kernel_split": split})
