"""experiments/mixconv.py as data, the report's peak finding, and a few cells of the sweep on Fashion-MNIST end to
end (real training, real processes) with the kernel-size plot and report section."""

import csv
import os
import subprocess
import sys

import pytest

from sweeps import grid, report_kernels

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("data, resolution", [("imagenet", 224), ("fashion_mnist", 56)])
def test_mixconv_grid(data, resolution):
  sweep = grid.load(os.path.join(REPO, f"experiments/mixconv.py:data={data}"))
  kernels = [(tuple(c.config.model.kernel_sizes), c.config.model.kernel_split) for c in sweep.cells]
  assert kernels == ([((k,), "equal") for k in (3, 5, 7, 9, 11, 13)]
                     + [(tuple(range(3, 2 * g + 2, 2)), "equal") for g in (2, 3, 4, 5, 6)]
                     + [(tuple(range(3, 2 * g + 2, 2)), "exponential") for g in (2, 3, 4)])
  assert {(c.config.alpha, c.config.resolution) for c in sweep.cells} == {(1.0, resolution)}
  assert sweep.cells[8].name == f"a1_r{resolution}_model.kernel_sizes=3-5-7-9"
  assert len({c.name for c in sweep.cells}) == 14


def group(sizes, top1, split="equal"):
  return {"fields": {"model.kernel_sizes": sizes, "model.kernel_split": split}, "test_top1": top1, "n": 1,
          "mult_adds": 1, "params": 1}


def test_peaks_are_found_on_each_curve():
  groups = [group([3], 0.70), group([5], 0.72), group([7], 0.73), group([9], 0.71),  # vanilla: a peak at 7x7
            group([3, 5], 0.72), group([3, 5, 7], 0.74),  # MixConv: rising to the last
            group([3, 5], 0.69, "exponential")]  # below the 3x3 baseline
  lines = {split: report_kernels.peak_line(split, line) for split, line in report_kernels.curves(groups).items()}
  assert lines["vanilla"] == "- vanilla k x k: peaks at 7x7 (73.00 %), then falls to 71.00 % at 9x9."
  assert lines["equal"].startswith("- MixConv (equal split): highest at the largest, g=3 (74.00 %): no peak")
  assert lines["exponential"].startswith("- MixConv (exponential split): highest at the smallest, 3x3 (70.00 %)")


@pytest.mark.slow
def test_mixconv_sweep_cells_on_fashion_mnist_end_to_end(tmp_path):
  """Four cells (3x3, 5x5, MixConv {3,5} equal and exponential) at a tiny budget, then the report."""
  workdir = tmp_path / "mixconv"
  tiny = ["--config.alpha=0.25", "--config.num_steps=3", "--config.batch_size=16",
          "--config.data.max_train_examples=96", "--config.data.max_eval_examples=32", "--config.wandb.mode=disabled"]
  for cell in (0, 1, 6, 11):
    result = subprocess.run([sys.executable, "-m", "sweeps.launch", "--config",
                             "experiments/mixconv.py:data=fashion_mnist,runlocal", "--workdir", str(workdir),
                             "--cell", str(cell), *tiny], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
  with open(workdir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["status"] for r in rows] == ["ok", "ok", "pending", "pending", "pending", "pending", "ok"] + \
      ["pending"] * 4 + ["ok"] + ["pending"] * 2
  mult_adds = {r["cell"]: int(r["mult_adds"]) for r in rows if r["status"] == "ok"}
  assert mult_adds["a0.25_r56_model.kernel_sizes=5"] > mult_adds["a0.25_r56_model.kernel_sizes=3-5"] > \
      mult_adds["a0.25_r56"]
  for name in ("acc_vs_mult_adds_kernels.png", "acc_vs_mult_adds_kernels.svg", "acc_vs_mult_adds.png"):
    assert (workdir / name).stat().st_size > 0
  text = (workdir / "report.md").read_text()
  section = text.split("## Depthwise kernel sizes (MixConv)")[1]
  assert "grouped by the fields the sweep varies (model.kernel_sizes, model.kernel_split)" in section
  assert "| [3, 5] | exponential | 1 |" in section and "71.98 %" in section  # the paper's point beside it
  assert "- vanilla k x k: highest at" in section and "Does accuracy peak?" in section
  assert "for reference only" in section  # Fashion-MNIST: the paper's points are not overlaid as if comparable
