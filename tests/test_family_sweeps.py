"""Sweeps across model families: the families and v2_grid sweep files list the promised cells with the promised
budget; the report keys curves, trend checks and Spearman by family, overlays each family's published points, and
reads a cell's family and number of classes from its final record; a tiny two-family sweep runs end to end."""

import csv
import json
import os
import subprocess
import sys

import pytest

from mnet_jax import paper
from sweeps import figures, grid, latency, markdown, paper_match, results, trends

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(spec):
  return grid.load(os.path.join(REPO, "experiments", spec))


@pytest.mark.parametrize("data,resolutions", [("fashion_mnist", (56, 48, 40, 32)),
                                              ("imagenet", (224, 192, 160, 128))])
def test_families_sweep_has_each_familys_widths_at_the_same_resolutions(data, resolutions):
  sweep = load(f"families.py:data={data}")
  cells = {(c.config.model.name, c.config.alpha, c.config.resolution) for c in sweep.cells}
  expected = {"mobilenet_v1": (1.0, 0.75, 0.5, 0.25), "mobilenet_v2": (1.0, 0.75, 0.5, 0.35),
              "mobilenet_v3_large": (1.0, 0.75), "mobilenet_v3_small": (1.0, 0.75)}
  assert cells == {(name, a, r) for name, alphas in expected.items() for a in alphas for r in resolutions}
  assert len(sweep.cells) == 48 == len({c.name for c in sweep.cells})
  assert "a0.75_r%d_model.name=mobilenet_v3_small" % resolutions[-1] in {c.name for c in sweep.cells}
  assert "a1_r%d" % resolutions[0] in {c.name for c in sweep.cells}  # V1, the base config's family
  budget = {(c.config.num_steps, c.config.batch_size, c.config.optim.base_learning_rate) for c in sweep.cells}
  assert len(budget) == 1  # one recipe for every family
  if data == "fashion_mnist":
    assert budget == {(180, 128, 0.1)}


def test_families_sweep_trains_at_the_demo_budget_on_fashion_mnist_unless_told_otherwise():
  def recipe(cell):  # the config but its wandb names, which carry the sweep's
    return {k: v for k, v in cell.config.to_dict().items() if k != "wandb"}

  demo_cell = next(c for c in load("demo.py").cells if c.name == "a1_r56")
  assert recipe(next(c for c in load("families.py").cells if c.name == "a1_r56")) == recipe(demo_cell)
  full = load("families.py:budget=full").cells[0]
  assert full.config.num_steps != demo_cell.config.num_steps
  assert recipe(full) == recipe(load("grid16.py").cells[0])
  assert {c.config.num_steps for c in load("families.py:runlocal").cells} != {demo_cell.config.num_steps}


@pytest.mark.parametrize("data,count,smallest", [("imagenet", 22, 96), ("fashion_mnist", 18, 32)])
def test_v2_grid_is_tf_slims_published_grid(data, count, smallest):
  sweep = load(f"v2_grid.py:data={data}")
  cells = [(c.config.alpha, c.config.resolution) for c in sweep.cells]
  assert len(cells) == count == len(set(cells))
  assert {c.config.model.name for c in sweep.cells} == {"mobilenet_v2"}
  assert min(r for _, r in cells) == smallest
  published = {(float(r["alpha"]), int(r["resolution"])) for r in paper.v2_checkpoints()}
  scale = 224 // max(r for _, r in cells)
  assert {(a, r * scale) for a, r in cells} == {(a, r) for a, r in published if r // scale >= 32}


def row(model, alpha, resolution, top1, series=""):
  mult_adds = {"mobilenet_v1": 2.0, "mobilenet_v2": 1.0}[model] * alpha * alpha * resolution * resolution
  return {"cell": f"{model}_a{alpha:g}_r{resolution}", "model": model, "alpha": alpha, "resolution": resolution,
          "variant": "standard", "mult_adds": mult_adds, "params": alpha, "status": "ok", "error": None,
          "test_top1": top1, "test_top5": 1.0, "train_seconds": 1.0, "images_per_second": 1.0, "latency_ms": mult_adds,
          "seed": 0, "key": f"{model} {alpha} {resolution} {series}", "group": f"{model}_a{alpha:g}_r{resolution}",
          "series": series, "config": {}}


# V1 ranks perfectly; V2 has one resolution pair out of order (alpha 0.5: 40 px below 32 px).
ROWS = [row("mobilenet_v1", 0.5, 32, 0.70), row("mobilenet_v1", 0.5, 40, 0.72), row("mobilenet_v1", 1.0, 32, 0.74),
        row("mobilenet_v1", 1.0, 40, 0.76), row("mobilenet_v2", 0.5, 32, 0.75), row("mobilenet_v2", 0.5, 40, 0.73),
        row("mobilenet_v2", 1.0, 32, 0.77), row("mobilenet_v2", 1.0, 40, 0.79)]


def test_trend_and_spearman_are_per_family():
  checked, exceptions, _ = trends.trend_exceptions(ROWS)
  assert checked == 8 and [(f.model, f.low["resolution"], f.high["resolution"]) for f in exceptions] == [
      ("mobilenet_v2", 32, 40)]
  table = trends.per_family(ROWS)
  assert [(m, n, checked, out) for m, n, checked, out, _, _ in table] == [
      ("mobilenet_v1", 4, 4, 0), ("mobilenet_v2", 4, 4, 1)]
  assert table[0][4] == pytest.approx(1.0) and table[1][4] == pytest.approx(0.8)
  lines = markdown.family_table(ROWS)
  assert "| mobilenet_v1 | 4 | 0 of 4 | 1.00 | 1.00 |" in lines
  assert "| mobilenet_v2 | 4 | 1 of 4 | 0.80 | 1.00 |" in lines
  assert markdown.fall_text(exceptions[0]).startswith("mobilenet_v2, at alpha 0.5, top-1 does not rise")
  assert markdown.family_table([r for r in ROWS if r["model"] == "mobilenet_v1"]) == []  # one family: no table
  assert "| cell | model | α |" in markdown.results_table(ROWS)
  assert "| cell | α |" in markdown.results_table(ROWS[:4])  # V1 alone: the table as before


def test_figure_has_a_line_per_family_and_alpha_and_each_familys_published_points():
  figure = figures.plot(ROWS, "mult_adds", "Mult-Adds (log scale)", overlay=True)
  labels = figure.axes[0].get_legend_handles_labels()[1]
  assert [label for label in labels if "α" in label] == [
      "mobilenet_v1, α = 1", "mobilenet_v1, α = 0.5", "mobilenet_v2, α = 1", "mobilenet_v2, α = 0.5"]
  assert "mobilenet_v1, published (ImageNet)" in labels and "mobilenet_v2, published (ImageNet)" in labels
  published = {line.get_label(): len(line.get_xdata()) for line in figure.axes[0].lines}
  assert published["mobilenet_v2, published (ImageNet)"] == len(paper.v2_checkpoints()) == 22
  single = figures.plot(ROWS[4:], "mult_adds", "Mult-Adds (log scale)", overlay=True)  # V2 alone: the V1 layout
  assert "mobilenet_v2, published (ImageNet)" in single.axes[0].get_legend_handles_labels()[1]


def test_published_points_of_each_family():
  points = paper_match.family_points()
  assert len(points["mobilenet_v2"]) == 22 and len(points["mobilenet_v3_large"]) == 2
  assert {(p["alpha"], p["top1"]) for p in points["mobilenet_v3_small"]} == {(1.0, 67.4), (0.75, 65.4)}
  assert [p["top1"] for p in points["mobilenet_v3_large_minimalistic"]] == [72.3]


def test_csv_has_a_model_column_only_beside_another_family(tmp_path):
  for rows, header in ((ROWS, ["cell", "model", "alpha"]), (ROWS[:4], ["cell", "alpha", "resolution"])):
    results.write_csv(str(tmp_path / "results.csv"), results.groups_of(rows))
    with open(tmp_path / "results.csv") as f:
      assert next(csv.reader(f))[:3] == header


def test_family_of_a_cell_comes_from_its_final_record_else_its_config():
  assert results.model_of({}, {}) == "mobilenet_v1"
  assert results.model_of({"model": {"name": "mobilenet_v2"}}, {}) == "mobilenet_v2"
  assert results.model_of({"model": {"name": "mobilenet_v2"}}, {"model": "mobilenet_v3_small",
                                                                 "minimalistic": True}) == \
      "mobilenet_v3_small_minimalistic"


def test_latency_reads_the_number_of_classes_of_any_family():
  import ml_collections
  from mnet_jax import workdir
  from mnet_jax.configs import fashion_mnist
  config = fashion_mnist.get_config("alpha=0.5,resolution=32")
  config.model.name = "mobilenet_v3_small"
  config = ml_collections.ConfigDict(json.loads(workdir.config_json(config)))  # as a cell's config.json gives it
  facts = workdir.model_facts(config, 10)
  assert latency.num_classes_of(config, facts) == 10
  assert latency.num_classes_of(config, {"params": facts["params"]}) == 10  # a record without num_classes


TINY = '''
from mnet_jax.configs import fashion_mnist


def get_config(arg=None):
  config = fashion_mnist.get_config("alpha=0.25,resolution=32")
  config.num_steps = 2
  config.batch_size = 8
  config.data.max_train_examples = 64
  config.data.max_eval_examples = 32
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.wandb.mode = "disabled"
  return config


def sweep(add, arg):
  add(**{"model.name": "mobilenet_v1"})
  add(**{"model.name": "mobilenet_v3_small"})
'''


@pytest.mark.slow
def test_a_two_family_sweep_runs_and_reports_each_family(tmp_path):
  path = tmp_path / "tiny_families.py"
  path.write_text(TINY)
  workdir = tmp_path / "sweep"
  result = subprocess.run([sys.executable, "-m", "sweeps.launch", "--config", str(path), "--workdir", str(workdir)],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  with open(workdir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["cell"], r["model"], r["status"]) for r in rows] == [
      ("a0.25_r32", "mobilenet_v1", "ok"), ("a0.25_r32_model.name=mobilenet_v3_small", "mobilenet_v3_small", "ok")]
  assert all(float(r["latency_ms"]) > 0 for r in rows)
  assert "| a0.25_r32_model.name=mobilenet_v3_small | mobilenet_v3_small | 0.25 |" in (
      workdir / "report.md").read_text()
