"""The paper's published figures (arXiv 1704.04861 Tables 2-9) and TF-Slim's checkpoint table, as data."""

import csv
import functools
from importlib import resources


@functools.cache
def _rows(filename):
  with resources.files("mnet_jax.paper_data").joinpath(filename).open() as f:
    return tuple(csv.DictReader(f))


def table2():
  """Table 2: percentage of Mult-Adds and params by layer type, for 1.0 MobileNet-224."""
  return _rows("paper_table2.csv")


def tables():
  """Tables 4-9, one row per (table, model); alpha/resolution are empty for other architectures."""
  return _rows("paper_tables.csv")


def slim_checkpoints():
  """TF-Slim's published MobileNet V1 checkpoints: Mult-Adds, params and ImageNet accuracy for all 16 cells."""
  return _rows("slim_checkpoints.csv")


def top1(alpha, resolution):
  """The paper's ImageNet top-1 (%) for an alpha x resolution cell of Tables 6/7, or None if it gives none."""
  for row in tables():
    if row["alpha"] and float(row["alpha"]) == alpha and int(row["resolution"]) == resolution and \
        row["model"].endswith(f"MobileNet-{resolution}"):
      return float(row["imagenet_top1"])
  return None
