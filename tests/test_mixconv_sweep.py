"""experiments/mixconv.py as data, the report's peak finding, and a few cells of the sweep on Fashion-MNIST end to
end (real training, real processes) with the kernel-size plot and report section."""

import csv
import os
import subprocess
import sys

import pytest

from sweeps import ablations, figures, grid, markdown

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


def group(sizes, top1, split="equal", mult_adds=1):
  return {"config": {"model": {"kernel_sizes": sizes, "kernel_split": split}}, "test_top1": top1,
          "test_top1_std": None, "n": 1, "mult_adds": mult_adds, "params": 1}


def test_peaks_are_found_on_each_curve():
  groups = [group([3], 0.70), group([5], 0.72), group([7], 0.73), group([9], 0.71),  # vanilla: a peak at 7x7
            group([3, 5], 0.72), group([3, 5, 7], 0.74),  # MixConv: rising to the last
            group([3, 5], 0.69, "exponential")]  # below the 3x3 baseline
  kernels = ablations.KERNELS
  lines = {split: markdown.peak_line(kernels, kernels.curves[split], line)
           for split, line in ablations.group_curves(kernels, groups).items()}
  assert lines["vanilla"] == "- vanilla k x k: peaks at 7x7 (73.00 %), then falls to 71.00 % at 9x9."
  assert lines["equal"].startswith("- MixConv (equal split): highest at the largest, g=3 (74.00 %): no peak")
  assert lines["exponential"].startswith("- MixConv (exponential split): highest at the smallest, 3x3 (70.00 %)")


def test_the_papers_sentence_is_read_from_its_points():
  kernels = ablations.KERNELS
  assert kernels.paper_summary(ablations.paper_curves(kernels)) == (
      "The paper (ImageNet, 1.0-224): vanilla kernels peak at 7x7 (72.03 %) and fall to 70.83 % at 13x13; MixConv "
      "keeps rising to g=6 (72.56 %); the exponential split is about equal to the equal split.")
  points = [{"values": {"model.kernel_sizes": sizes, "model.kernel_split": split}, "top1": top1, "mult_adds": 1}
            for sizes, split, top1 in [((3,), "equal", 70.0), ((5,), "equal", 71.0), ((3, 5), "equal", 72.0),
                                       ((3, 5, 7), "equal", 71.5), ((3, 5), "exponential", 73.0)]]
  assert kernels.paper_summary(ablations.curves(kernels, points)) == (
      "The paper (ImageNet, 1.0-224): vanilla kernels keep rising to 5x5 (71.00 %); MixConv peaks at g=2 (72.00 %) "
      "and falls to 71.50 % at g=3; the exponential split is above the equal split.")


def test_a_new_ablation_is_a_field_list_and_labels(tmp_path):
  """An ablation over a field the report has never seen: its curves, peaks, table and figure from the generic code."""
  from matplotlib.container import ErrorbarContainer
  groups_per_layer = ablations.Ablation(
      title="Pointwise groups", fields=("model.pointwise_groups",),
      point=lambda values: ("grouped", values["model.pointwise_groups"], f"g={values['model.pointwise_groups']}"),
      curves={"grouped": ablations.Curve("o-", "C1", "grouped 1x1", "grouped 1x1 convolutions")},
      plot="acc_vs_mult_adds_groups", plot_title="Accuracy vs Mult-Adds: pointwise groups",
      image_alt="accuracy vs Mult-Adds, pointwise groups", smallest_best="more groups do not help here")
  groups = [{"config": {"model": {"pointwise_groups": g}}, "test_top1": top1, "test_top1_std": None, "n": 1,
             "mult_adds": 100 // g, "params": 1} for g, top1 in ((1, 0.70), (2, 0.72), (4, 0.71))]
  text = markdown.ablation_section(groups_per_layer, ["model.pointwise_groups"], groups, "fashion_mnist")
  assert "| 4 | 1 | 0.0 | 0.000 | 71.00 % | – |" in text
  assert "- grouped 1x1 convolutions: peaks at g=2 (72.00 %), then falls to 71.00 % at g=4." in text
  assert text.endswith("![accuracy vs Mult-Adds, pointwise groups](acc_vs_mult_adds_groups.png)")
  figure = figures.ablation_plot(groups_per_layer, groups, overlay=True)
  (line,) = [c for c in figure.axes[0].containers if isinstance(c, ErrorbarContainer)]
  assert list(line.lines[0].get_xdata()) == [100, 50, 25] and not line.has_yerr
  assert [t.get_text() for t in figure.axes[0].texts] == ["g=1", "g=2", "g=4"]


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
