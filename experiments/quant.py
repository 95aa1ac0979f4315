"""The quantization ablation: int8 weights with a scale per output channel against one scale per tensor
(Krishnamoorthi 2018, arXiv:1806.08342, Tables 2-4), over grid16's 16 alpha x resolution cells at its budget.

  python -m sweeps.launch --config experiments/quant.py --workdir runs/grid16 --parallel 2
  python -m sweeps.launch --config experiments/quant.py:budget=demo --workdir runs/demo --parallel 2   # make demo's

The cells are experiments/grid16.py's (the same configs, so the same cell names: pointed at a trained grid16's
workdir, the cells are only exported). After training, each cell is exported to LiteRT once with both int8 models
(`EXPORT`, read by sweeps/exports.py): results.csv gets int8_top1 and int8_per_tensor_top1 (and their drops from
the float model) for every cell, and report.md a table, the int8-drop figure and the folded depthwise layers' weight
ranges. Cost and what it shows: docs/deployment.md#the-quantization-ablation.
"""

from experiments import grid16

EXPORT = {"weights": "per-channel,per-tensor"}  # sweeps.exports: one export of a cell writes both int8 models


def get_config(arg=None):
  return grid16.get_config(arg)


def sweep(add, arg=None):
  grid16.sweep(add, arg)  # grid16's cells, so the same cell names
