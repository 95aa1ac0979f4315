r"""LiteRT batch-1 latency of the paper's 16 ImageNet-shape cells (alpha x resolution, 1000 classes), float32 and
int8, against Mult-Adds.

  python benchmarks/litert_latency.py [--alphas 1.0,0.75,0.5,0.25] [--resolutions 224,192,160,128]

Each cell is exported as `mnet_jax.export` exports a workdir (the BatchNorm-folded TF twin, TFLite's converter;
int8 calibrated on 8 uniform-noise images, which changes the ranges but not the arithmetic), from freshly
initialised weights: dense arithmetic takes the same time whatever the values, and no dataset is needed. Then every
model is timed in a fresh process of its own (`mnet_jax.export_litert`), one after another, at 1 thread and at
every core. Prints a table, the Spearman rank correlation of each latency column with Mult-Adds, and the int8
speedup at 1 thread; writes the same to benchmarks/results/<date>_<commit>_litert.txt. Needs a quiet machine.
"""

import argparse
import datetime
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mnet_jax import process  # noqa: E402


def ranks(values):
  """Ranks 1..n, ties given their average rank."""
  values = np.asarray(values, np.float64)
  order = np.argsort(values, kind="stable")
  result = np.empty(len(values))
  result[order] = np.arange(1, len(values) + 1)
  for value in np.unique(values):
    tied = values == value
    result[tied] = result[tied].mean()
  return result


def spearman(a, b):
  return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def export_cell(alpha, resolution, out):
  """Writes out/model_float32.tflite and out/model_int8.tflite for the cell; returns their paths."""
  import jax
  from mnet_jax.export_tf import convert
  from mnet_jax.models.mobilenet_v1 import MobileNetV1
  from mnet_jax.workdir import write_atomically
  model = MobileNetV1(alpha=alpha, num_classes=1000, kernels="portable")
  variables = jax.jit(lambda: model.init(jax.random.PRNGKey(0), np.zeros((1, resolution, resolution, 3),
                                                                         np.float32)))()
  variables = jax.tree.map(np.asarray, variables)
  noise = np.random.default_rng(0).uniform(-1, 1, (8, 1, resolution, resolution, 3)).astype(np.float32)
  paths = {}
  for key, options in (("float32", {}), ("int8", {"int8": True, "calibration": list(noise)})):
    paths[key] = os.path.join(out, f"{alpha}_{resolution}_{key}.tflite")
    write_atomically(paths[key], convert(model, variables, resolution, **options))
  return paths


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--alphas", default="1.0,0.75,0.5,0.25")
  parser.add_argument("--resolutions", default="224,192,160,128")
  args = parser.parse_args()
  process.setup_process()
  from mnet_jax import count
  from mnet_jax.export import measure_latency
  from mnet_jax.export_litert import cores, machine
  cells = [(float(a), int(r)) for a in args.alphas.split(",") for r in args.resolutions.split(",")]
  threads = sorted({1, cores()})
  rows = []
  with tempfile.TemporaryDirectory() as out:
    exported = []
    for alpha, resolution in cells:
      print(f"exporting {alpha}-{resolution} ...", file=sys.stderr, flush=True)
      exported.append(export_cell(alpha, resolution, out))
    for (alpha, resolution), paths in zip(cells, exported):  # all conversions first: nothing else runs beside a timing
      row = {"alpha": alpha, "resolution": resolution,
             "mult_adds": count.count(alpha, resolution, "standard", 1000)["mult_adds"],
             "float_bytes": os.path.getsize(paths["float32"]), "int8_bytes": os.path.getsize(paths["int8"])}
      for key in ("float32", "int8"):
        for m in measure_latency(paths[key], threads):
          row[f"{key}_{m['threads']}t"] = m["latency_ms"]
      rows.append(row)
      print(f"timed {alpha}-{resolution}", file=sys.stderr, flush=True)
  columns = [f"{key}_{t}t" for key in ("float32", "int8") for t in threads]
  stamp = f"{datetime.datetime.now():%Y-%m-%d %H:%M}"
  lines = [f"# LiteRT (ai-edge-litert, XNNPACK) batch-1 median ms; {machine()}; {stamp}",
           "| alpha | resolution | Mult-Adds | " + " | ".join(f"{c} ms" for c in columns) +
           " | int8 speedup 1t | float bytes | int8 bytes |", "| --- " * (6 + len(columns)) + "|"]
  for row in rows:
    lines.append(f"| {row['alpha']} | {row['resolution']} | {row['mult_adds']:,} | " +
                 " | ".join(f"{row[c]:.3f}" for c in columns) +
                 f" | {row['float32_1t'] / row['int8_1t']:.2f}x | {row['float_bytes']:,} | {row['int8_bytes']:,} |")
  mult_adds = [row["mult_adds"] for row in rows]
  for c in columns:
    lines.append(f"Spearman({c}, Mult-Adds) = {spearman([row[c] for row in rows], mult_adds):.3f}")
  slowest = [row for row in rows if row["alpha"] == 1.0 and row["resolution"] >= 128]
  for row in slowest:
    lines.append(f"int8 speedup at 1 thread, alpha 1.0, {row['resolution']} px: "
                 f"{row['float32_1t'] / row['int8_1t']:.2f}x")
  text = "\n".join(lines) + "\n"
  print(text)
  commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()
  path = os.path.join(REPO, "benchmarks", "results", f"{datetime.date.today()}_{commit}_litert.txt")
  with open(path, "w") as f:
    f.write(text)
  print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
  main()
