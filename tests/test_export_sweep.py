"""Exported cells in sweeps: `sweeps.launch --export` on a small grid fills the LiteRT columns and draws the figures,
a second run exports nothing, `sweeps.report --export` exports what is missing and records a failing cell's error;
a sweep file's EXPORT; the quantization ablation's grid; bad export options as one line. Real training, real
exports, real processes."""

import csv
import json
import os
import subprocess
import sys

import pytest

from sweeps import exports, grid, markdown, results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GRID = '''
from mnet_jax.configs import fashion_mnist

{export}


def get_config(arg=None):
  config = fashion_mnist.get_config("alpha=0.25,resolution=32")
  config.model.stem_stride = 2
  config.num_steps = 2
  config.batch_size = 16
  config.data.max_train_examples = 256
  config.data.max_eval_examples = 64
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.wandb.mode = "disabled"
  return config


def sweep(add, arg):
{cells}
'''
THREE_CELLS = "  add(alpha=0.25, resolution=32)\n  add(alpha=0.5, resolution=32)\n  add(alpha=0.25, resolution=40)"
# Few calibration images and short latency runs: the defaults (300 images, >= 200 runs and >= 1 s) cost minutes.
QUICK = ("--export-calibration-images", "4", "--export-threads", "1", "--export-min-runs", "5",
         "--export-min-seconds", "0")
FILLED = ("litert_ms", "litert_int8_ms", "tflite_bytes", "float32_top1", "int8_top1", "int8_drop",
          "int8_per_tensor_top1", "int8_per_tensor_drop")


def write_grid(tmp_path, cells=THREE_CELLS, export=""):
  path = tmp_path / "tiny_export.py"
  path.write_text(GRID.format(export=export, cells=cells))
  return str(path)


def run(module, *args, check=True):
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=1200)
  if check and result.returncode != 0:
    raise AssertionError(f"{module} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
  return result


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def export_times(workdir, cells):
  return {c: os.stat(workdir / c / "export" / "export.json").st_mtime_ns for c in cells}


@pytest.mark.slow
def test_launch_export_fills_the_columns_and_a_second_run_exports_nothing(tmp_path):
  workdir = tmp_path / "sweep"
  first = run("sweeps.launch", "--config", write_grid(tmp_path), "--workdir", str(workdir), "--export",
              "--export-weights", "per-channel,per-tensor", *QUICK)
  cells = ["a0.25_r32", "a0.5_r32", "a0.25_r40"]
  assert all(f"export {c}: " in first.stdout for c in cells), first.stdout
  rows = read_csv(workdir / "results.csv")
  assert [r["cell"] for r in rows] == cells and all(r["status"] == "ok" and not r["error"] for r in rows)
  for row in rows:
    assert all(row[column] != "" for column in FILLED), row
    assert float(row["litert_ms"]) > 0 and float(row["litert_int8_ms"]) > 0
    assert float(row["int8_drop"]) == pytest.approx(float(row["float32_top1"]) - float(row["int8_top1"]))
    # The float model is the run's network: the same top-1 on the same 64 test images, up to near-ties.
    assert float(row["float32_top1"]) == pytest.approx(float(row["test_top1"]), abs=1 / 64 + 1e-9)
    record = json.loads((workdir / row["cell"] / "export" / "export.json").read_text())
    assert record["options"]["weights"] == ["per-channel", "per-tensor"]
    assert record["summary"]["tflite_bytes"] == int(row["tflite_bytes"])
  assert float(rows[1]["tflite_bytes"]) > float(rows[0]["tflite_bytes"])  # alpha 0.5 holds more weights
  for name in ("acc_vs_litert.png", "int8_drop_vs_mult_adds.png"):
    assert (workdir / name).stat().st_size > 10_000
  report = (workdir / "report.md").read_text()
  assert "## LiteRT export" in report and "![int8 drop vs Mult-Adds](int8_drop_vs_mult_adds.png)" in report
  assert "Spearman's rank correlation of LiteRT latency with Mult-Adds over 3 groups: float32 " in report
  assert "LiteRT latency (float32, 1 thread)" in report  # beside top-1's and JAX latency's
  assert "- int8 per-tensor: top-1 drop" in report and "Folded depthwise weights" in report

  before = export_times(workdir, cells)
  second = run("sweeps.launch", "--config", write_grid(tmp_path), "--workdir", str(workdir), "--export",
               "--export-weights", "per-tensor,per-channel", *QUICK)
  assert "export " not in second.stdout and "trained" not in second.stdout
  assert export_times(workdir, cells) == before

  # An already-trained sweep: the report exports what is missing; a failing cell is recorded, the others go on.
  (workdir / "a0.25_r32" / "export" / "export.json").unlink()
  broken = workdir / "a0.5_r32" / "export"
  for path in broken.iterdir():
    path.unlink()
  broken.rmdir()
  broken.write_text("a file where the export directory goes")
  third = run("sweeps.report", "--workdir", str(workdir), "--export", "--export-weights", "per-channel,per-tensor",
              *QUICK, check=False)
  assert third.returncode == 1 and third.stderr.strip().splitlines()[-1].startswith(
      "error: the export of 1 cells failed: a0.5_r32"), third.stderr
  assert "export a0.25_r32: " in third.stdout and "export a0.5_r32 FAILED" in third.stdout
  assert "export a0.25_r40" not in third.stdout
  rows = {r["cell"]: r for r in read_csv(workdir / "results.csv")}
  assert rows["a0.5_r32"]["status"] == "ok" and rows["a0.5_r32"]["error"].startswith("export: ")
  assert rows["a0.5_r32"]["litert_ms"] == "" and rows["a0.25_r32"]["litert_ms"] != ""

  broken.unlink()
  fourth = run("sweeps.report", "--workdir", str(workdir), "--export", "--export-weights", "per-channel,per-tensor",
               *QUICK)
  assert "export a0.5_r32: " in fourth.stdout and "export a0.25_r32" not in fourth.stdout
  assert not (workdir / "a0.5_r32" / results.EXPORT_ERROR_FILE).exists()
  assert all(r["error"] == "" and r["litert_int8_ms"] != "" for r in read_csv(workdir / "results.csv"))


@pytest.mark.slow
def test_a_sweep_that_declares_export_is_exported_without_the_flag(tmp_path):
  path = write_grid(tmp_path, "  add(alpha=0.25, resolution=32)",
                    export='EXPORT = {"weights": "per-tensor", "calibration_images": 4, "threads": [1], '
                           '"min_runs": 5, "min_seconds": 0.0}')
  workdir = tmp_path / "sweep"
  result = run("sweeps.launch", "--config", path, "--workdir", str(workdir), "--export-calibration-images", "3")
  assert "export a0.25_r32: " in result.stdout
  record = json.loads((workdir / "a0.25_r32" / "export" / "export.json").read_text())
  assert record["options"]["weights"] == ["per-tensor"] and record["options"]["calibration_images"] == 3
  [row] = read_csv(workdir / "results.csv")
  assert row["int8_per_tensor_top1"] != "" and row["int8_top1"] == "" and row["litert_ms"] != ""
  assert sorted(os.listdir(workdir / "a0.25_r32" / "export")) == ["export.json", "model_float32.tflite",
                                                                   "model_int8_per_tensor.tflite"]


def assert_one_line_error(result, *fragments):
  assert result.returncode != 0 and "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert all(fragment in lines[0] for fragment in fragments), lines[0]


@pytest.mark.parametrize("flags, export, expected", [
    (("--export", "--export-weights", "per-row"), "", "--weights 'per-row' is unknown; allowed: per-channel"),
    (("--export", "--export-calibration-images", "0"), "", "--calibration-images 0 is not allowed"),
    (("--export", "--export-threads", "1,x"), "", "--threads '1,x' is not allowed"),
    (("--export", "--export-min-runs", "0"), "", "--min-runs 0 is not allowed"),
    (("--export-weights", "per-tensor"), "", "--export-weights goes with --export"),
    ((), 'EXPORT = {"weight": "per-tensor"}', "EXPORT keys ['weight'] are unknown; allowed: weights"),
])
@pytest.mark.slow
def test_bad_export_options_give_one_line_before_anything_trains(tmp_path, flags, export, expected):
  workdir = tmp_path / "sweep"
  result = run("sweeps.launch", "--config", write_grid(tmp_path, export=export), "--workdir", str(workdir), *flags,
               check=False)
  assert_one_line_error(result, expected)
  assert not workdir.exists()


def test_the_quantization_ablation_is_grid16_exported_with_both_int8_models():
  quant = grid.load(os.path.join(REPO, "experiments/quant.py"))
  grid16 = grid.load(os.path.join(REPO, "experiments/grid16.py"))
  assert [c.name for c in quant.cells] == [c.name for c in grid16.cells] and len(quant.cells) == 16
  strip = lambda config: {k: v for k, v in config.to_dict().items() if k != "wandb"}  # noqa: E731
  assert all(strip(a.config) == strip(b.config) for a, b in zip(quant.cells, grid16.cells))
  assert exports.declared(os.path.join(REPO, "experiments/quant.py")) == {"weights": "per-channel,per-tensor"}
  assert exports.declared(os.path.join(REPO, "experiments/grid16.py")) == {}
  assert len(grid.load(os.path.join(REPO, "experiments/quant.py:data=imagenet")).cells) == 16


def test_the_quantization_lines_name_the_widest_folded_depthwise_range():
  groups = [{"int8_drop": 0.001, "int8_per_tensor_drop": 0.5}, {"int8_drop": 0.003, "int8_per_tensor_drop": 0.7}]
  records = {"a1_r56": {"folded_depthwise_range_ratio": {"block1_dw": 40.0, "block2_dw": 300.0}},
             "a0.5_r56": {"folded_depthwise_range_ratio": {"block1_dw": 10.0, "block2_dw": 20.0}}}
  lines = markdown.quantization_lines(groups, records)
  assert lines[0] == "- int8 per-channel: top-1 drop 0.10 points to 0.30 points (median 0.20 points) over 2 groups."
  assert lines[1].startswith("- int8 per-tensor: top-1 drop 50.00 points to 70.00 points")
  assert "is 300 in a1_r56's block2_dw (the largest), median over layers 15.0-170.0 per cell" in lines[2]
