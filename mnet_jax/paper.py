"""The paper's published figures (arXiv 1704.04861 Tables 2-9), TF-Slim's checkpoint tables (V1, V2), the V3 paper's
Table 3 with TF-Slim's README, and the MixConv paper's MobileNet V1 points (arXiv 1907.09595, read off its
figures), as data."""

import csv
import functools
from importlib import resources


@functools.cache
def _rows(filename):
  with resources.files("mnet_jax.paper_data").joinpath(filename).open() as f:
    return tuple(csv.DictReader(line for line in f if not line.startswith("#")))  # '#' lines: the file's notes


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


def mixconv_points():
  """The MixConv paper's MobileNet V1 1.0-224 ImageNet points: kernel_sizes (a tuple), split, its plotted FLOPs
  (M), top-1 (%), and this project's Mult-Adds for the same network (see the file's notes)."""
  return tuple({"figure": row["figure"], "kernel_sizes": tuple(int(k) for k in row["kernel_sizes"].split(";")),
                "split": row["split"], "flops_paper_m": float(row["flops_paper_M"]), "top1": float(row["top1"]),
                "mult_adds": int(row["mult_adds"])} for row in _rows("mixconv_points.csv"))


def v2_checkpoints():
  """TF-Slim's 22 published MobileNet V2 checkpoints: Mult-Adds (M, truncated), params (M) and ImageNet accuracy."""
  return _rows("v2_slim_checkpoints.csv")


def v3_tables():
  """MobileNet V3: the paper's Table 3 and TF-Slim's README rows (Mult-Adds M, params M, top-1), with a note where
  a published figure does not follow from the architecture."""
  return _rows("v3_tables.csv")
