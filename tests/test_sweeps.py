"""Sweeps: the grids as data, the launcher's executors (local, --cell K, submitit local), idempotence and resume
after a kill, failure recording, the report, and one-line errors for bad input. Every run is real: real
processes, real training on a small slice of Fashion-MNIST, real orbax checkpoints."""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest

from mnet_jax import metrics, paper
from sweeps import figures, grid, markdown, paper_match, results, trends

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DETERMINISTIC_COLUMNS = ("cell", "alpha", "resolution", "variant", "mult_adds", "params", "test_top1", "test_top5",
                         "status")

TINY_BASE = '''
from mnet_jax.configs import fashion_mnist


def get_config(arg=None):
  config = fashion_mnist.get_config("alpha=0.25,resolution=32")
  config.num_steps = {num_steps}
  config.batch_size = 16
  config.optim.base_learning_rate = 0.1  # FOUR_CELLS's first value: a cell's name leaves out what equals the base
  config.data.max_train_examples = 256
  config.data.max_eval_examples = 64
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.wandb.mode = "{wandb_mode}"
  return config
'''


def write_grid(tmp_path, sweep_body, num_steps=2, wandb_mode="disabled", name="tiny.py"):
  path = tmp_path / name
  path.write_text(TINY_BASE.format(num_steps=num_steps, wandb_mode=wandb_mode) + "\n\n" + sweep_body)
  return str(path)


FOUR_CELLS = '''
def sweep(add, arg):
  for alpha in (0.25, 0.5):
    for learning_rate in (0.1, 0.05):
      add(alpha=alpha, **{"optim.base_learning_rate": learning_rate})
'''


def launch(*args, check=True, **kwargs):
  result = subprocess.run([sys.executable, "-m", "sweeps.launch", *args], cwd=REPO, capture_output=True, text=True,
                          **kwargs)
  if check and result.returncode != 0:
    raise AssertionError(f"launcher failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
  return result


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def deterministic(rows):
  return [{k: row[k] for k in DETERMINISTIC_COLUMNS} for row in rows]


# --- grids as data ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data,resolutions", [("imagenet", (224, 192, 160, 128)), ("fashion_mnist", (56, 48, 40, 32))])
def test_paper_grids(data, resolutions):
  expected = {"table6": 4, "table7": 4, "grid16": 16, "table4": 2, "table5": 2}
  for name, size in expected.items():
    sweep = grid.load(os.path.join(REPO, "experiments", f"{name}.py:data={data}"))
    assert len(sweep.cells) == size
    assert len({c.name for c in sweep.cells}) == size
    for cell in sweep.cells:
      assert cell.config.resolution in resolutions
      assert cell.config.wandb.group == sweep.name
  grid16 = grid.load(os.path.join(REPO, f"experiments/grid16.py:data={data}"))
  assert {(c.config.alpha, c.config.resolution) for c in grid16.cells} == {
      (a, r) for a in (1.0, 0.75, 0.5, 0.25) for r in resolutions}
  # rho = 1, 6/7, 5/7, 4/7, as in the paper
  assert [r / resolutions[0] for r in resolutions] == [r / 224 for r in (224, 192, 160, 128)]
  table6 = grid.load(os.path.join(REPO, f"experiments/table6.py:data={data}"))
  paper_alphas = [float(r["alpha"]) for r in paper.tables() if r["table"] == "6"]
  assert [c.config.alpha for c in table6.cells] == paper_alphas
  table5 = grid.load(os.path.join(REPO, f"experiments/table5.py:data={data}"))
  assert [(c.config.alpha, c.config.variant) for c in table5.cells] == [(0.75, "standard"), (1.0, "shallow")]
  table4 = grid.load(os.path.join(REPO, f"experiments/table4.py:data={data}"))
  assert [c.config.variant for c in table4.cells] == ["standard", "full_conv"]


def test_cell_names_are_deterministic_and_shared_between_sweeps():
  grid16 = grid.load(os.path.join(REPO, "experiments/grid16.py"))
  table6 = grid.load(os.path.join(REPO, "experiments/table6.py"))
  table4 = grid.load(os.path.join(REPO, "experiments/table4.py"))
  assert [c.name for c in table6.cells] == ["a1_r56", "a0.75_r56", "a0.5_r56", "a0.25_r56"]
  assert {c.name for c in table6.cells} <= {c.name for c in grid16.cells}
  assert [c.name for c in table4.cells] == ["a1_r56", "a1_r56_variant=full_conv"]
  assert [c.name for c in grid.load(os.path.join(REPO, "experiments/grid16.py")).cells] == [c.name for c in grid16.cells]


def test_any_field_can_be_swept_and_overridden(tmp_path):
  sweep = grid.load(write_grid(tmp_path, FOUR_CELLS), [("batch_size", "8"), ("data.flip", "false")])
  assert [c.name for c in sweep.cells] == ["a0.25_r32", "a0.25_r32_optim.base_learning_rate=0.05", "a0.5_r32",
                                           "a0.5_r32_optim.base_learning_rate=0.05"]
  assert [c.config.optim.base_learning_rate for c in sweep.cells] == [0.1, 0.05, 0.1, 0.05]
  assert all(c.config.batch_size == 8 and c.config.data.flip is False for c in sweep.cells)


@pytest.mark.slow
def test_list_prints_the_cells_with_their_index(tmp_path):
  result = launch("--config", write_grid(tmp_path, FOUR_CELLS), "--list")
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 4
  assert lines[2].split()[:2] == ["2", "a0.5_r32"]


# --- bad input: one clear line each --------------------------------------------------------------------------------

def assert_one_line_error(result, *fragments):
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_unknown_sweep_name(tmp_path):
  result = launch("--config", "experiments/table66.py", "--workdir", str(tmp_path / "w"), check=False)
  assert_one_line_error(result, "experiments/table66.py", "does not exist", "table6.py", "grid16.py")


@pytest.mark.slow
def test_config_without_a_sweep(tmp_path):
  result = launch("--config", "mnet_jax/configs/fashion_mnist.py", "--workdir", str(tmp_path / "w"), check=False)
  assert_one_line_error(result, "mnet_jax/configs/fashion_mnist.py", "declares no sweep()", "sweeps in experiments/: ")


@pytest.mark.slow
def test_empty_grid(tmp_path):
  path = write_grid(tmp_path, "def sweep(add, arg):\n  pass\n")
  result = launch("--config", path, "--workdir", str(tmp_path / "w"), check=False)
  assert_one_line_error(result, "declares no cells")


@pytest.mark.slow
def test_cell_out_of_range(tmp_path):
  result = launch("--config", write_grid(tmp_path, FOUR_CELLS), "--workdir", str(tmp_path / "w"), "--cell", "4",
                  check=False)
  assert_one_line_error(result, "--cell 4 is out of range", "4 cells (0-3)")


@pytest.mark.slow
def test_workdir_not_writable(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  result = launch("--config", write_grid(tmp_path, FOUR_CELLS), "--workdir", str(blocker / "sweep"), check=False)
  assert_one_line_error(result, str(blocker / "sweep"), "is not writable")


@pytest.mark.slow
def test_unknown_override_and_swept_override(tmp_path):
  path = write_grid(tmp_path, FOUR_CELLS)
  result = launch("--config", path, "--list", "--config.optim.no_such_field=1", check=False)
  assert_one_line_error(result, "optim.no_such_field", "does not exist")
  result = launch("--config", path, "--list", "--config.alpha=1.0", check=False)
  assert_one_line_error(result, "--config.alpha", "sets it in every cell")


@pytest.mark.slow
def test_unknown_dataset_argument():
  result = launch("--config", "experiments/grid16.py:data=cifar", "--list", check=False)
  assert_one_line_error(result, "data='cifar'", "fashion_mnist")


# --- executors --------------------------------------------------------------------------------------------------

TWO_CELLS = '''
def sweep(add, arg):
  add(alpha=0.25)
  add(alpha=0.5, **{"optim.base_learning_rate": 0.05})
'''


@pytest.mark.slow
def test_cell_processes_match_the_local_executor(tmp_path):
  """--cell K for each K as separate processes gives the same results.csv as one local run; reruns train nothing."""
  path = write_grid(tmp_path, TWO_CELLS)
  local = tmp_path / "local"
  result = launch("--config", path, "--workdir", str(local))
  assert "ETA" in result.stdout and "cell 1 a0.5_r32_optim.base_learning_rate=0.05 trained" in result.stdout
  by_cell = tmp_path / "by_cell"
  for index in range(2):
    launch("--config", path, "--workdir", str(by_cell), "--cell", str(index))
  local_rows, cell_rows = read_csv(local / "results.csv"), read_csv(by_cell / "results.csv")
  assert [r["status"] for r in local_rows] == ["ok"] * 2
  assert deterministic(local_rows) == deterministic(cell_rows)
  assert all(float(r["latency_ms"]) > 0 and float(r["train_seconds"]) > 0 for r in local_rows)
  for name in ("acc_vs_mult_adds.png", "acc_vs_mult_adds.svg", "acc_vs_params.png", "acc_vs_params.svg",
               "acc_vs_latency.png", "report.md"):
    assert (local / name).stat().st_size > 0
  assert "### Table 6" in (local / "report.md").read_text()

  metrics_before = {r["cell"]: (local / r["cell"] / "metrics.jsonl").read_bytes() for r in local_rows}
  rerun = launch("--config", path, "--workdir", str(local))
  assert "trained" not in rerun.stdout
  assert {r["cell"]: (local / r["cell"] / "metrics.jsonl").read_bytes() for r in local_rows} == metrics_before
  assert deterministic(read_csv(local / "results.csv")) == deterministic(local_rows)


@pytest.mark.slow
def test_killed_mid_cell_resumes_that_cell_and_skips_finished_ones(tmp_path):
  # The trainer's test hook SIGKILLs the launcher right after a cell commits checkpoint 30: only the second cell
  # checkpoints there (the first every 60 steps), so the kill lands mid-way through it, after the first finished.
  path = write_grid(tmp_path, "def sweep(add, arg):\n  add(alpha=0.25, checkpoint_every_steps=60)\n"
                    "  add(alpha=0.5)\n", num_steps=60)
  workdir = tmp_path / "sweep"
  first, second = workdir / "a0.25_r32_checkpoint_every_steps=60", workdir / "a0.5_r32"
  killed = launch("--config", path, "--workdir", str(workdir), check=False,
                  env=dict(os.environ, MNET_JAX_TEST_KILL_AFTER_CHECKPOINT="30"))
  assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
  assert metrics.final_metrics(str(first)) is not None
  assert metrics.final_metrics(str(second)) is None
  first_metrics = (first / "metrics.jsonl").read_bytes()

  result = launch("--config", path, "--workdir", str(workdir))
  assert "cell 0 " not in result.stdout  # finished: skipped without a word
  assert "cell 1 a0.5_r32 trained" in result.stdout
  assert "resuming from checkpoint step 30" in result.stdout
  assert (first / "metrics.jsonl").read_bytes() == first_metrics
  assert metrics.final_metrics(str(second))["step"] == 60
  assert [r["status"] for r in read_csv(workdir / "results.csv")] == ["ok", "ok"]


@pytest.mark.slow
def test_submitit_local_executor_records_a_failing_cell_and_runs_the_other(tmp_path):
  body = "def sweep(add, arg):\n  add(alpha=0.25)\n  add(alpha=0.5, **{'model.activation': 'no_such_activation'})\n"
  path = write_grid(tmp_path, body, wandb_mode="offline")
  workdir = tmp_path / "sweep"
  result = launch("--config", path, "--workdir", str(workdir), "--executor", "submitit-local", check=False)
  assert result.returncode == 1, result.stdout + result.stderr
  assert "submitted 2 cells as local job array" in result.stdout
  assert "1 of 2 cells failed: a0.5_r32_model.activation=no_such_activation" in result.stdout
  rows = read_csv(workdir / "results.csv")
  assert [r["status"] for r in rows] == ["ok", "failed"]
  assert "no_such_activation" in rows[1]["error"]
  assert (workdir / "a0.5_r32_model.activation=no_such_activation" / "error.json").exists()
  assert list((workdir / "submitit").iterdir())  # the jobs' own logs
  assert list((workdir / "a0.25_r32" / "wandb").glob("offline-run-*"))  # each cell a wandb run
  assert not list(workdir.glob("wandb/offline-run-*"))  # no summary for an incomplete sweep


def test_paper_resolutions_map_to_the_grids_by_rho():
  resolution_for = paper_match.resolution_for
  assert [resolution_for(r, [56, 40, 32]) for r in (224, 192, 160, 128)] == [56, None, 40, 32]
  assert [resolution_for(r, [56, 48, 40, 32]) for r in (224, 192, 160, 128)] == [56, 48, 40, 32]
  assert [resolution_for(r, [224, 160]) for r in (224, 192, 160, 128)] == [224, None, 160, None]


# --- several cells per device -----------------------------------------------------------------------------------

PROBE = '''
import json as _json, os as _os
with open(_os.path.join({probe_dir!r}, f"probe-{{_os.getpid()}}.json"), "w") as _f:  # what each cell process got
  _json.dump({{"cores": sorted(_os.sched_getaffinity(0)),
              "preallocate": _os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")}}, _f)
'''


@pytest.mark.slow
def test_cells_per_device_runs_k_processes_each_on_its_cores_with_the_same_error_handling(tmp_path):
  probes = tmp_path / "probes"
  probes.mkdir()
  body = PROBE.format(probe_dir=str(probes)) + (
      "def sweep(add, arg):\n  add(alpha=0.25)\n  add(alpha=0.5, **{'model.activation': 'no_such_activation'})\n")
  path = write_grid(tmp_path, body)
  workdir = tmp_path / "sweep"
  env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
  result = launch("--config", path, "--workdir", str(workdir), "--cells-per-device", "2", check=False, env=env)
  assert result.returncode == 1, result.stdout + result.stderr
  assert "cell 0 a0.25_r32 trained" in result.stdout
  assert "1 of 2 cells failed: a0.5_r32_model.activation=no_such_activation" in result.stdout
  rows = read_csv(workdir / "results.csv")
  assert [r["status"] for r in rows] == ["ok", "failed"] and "no_such_activation" in rows[1]["error"]
  cores = sorted(os.sched_getaffinity(0))
  seen = [json.loads(p.read_text()) for p in probes.iterdir()]
  assert all(s["preallocate"] is None for s in seen)  # a GPU setting only
  if len(cores) >= 2:  # the launcher (all cores) and one process per slot, each on half of them
    half = len(cores) // 2
    assert sorted(s["cores"] for s in seen if s["cores"] != cores) == [cores[:half], cores[half:2 * half]]
  # Idempotent: the finished cell is skipped, the failed one tried again.
  again = launch("--config", path, "--workdir", str(workdir), "--cells-per-device", "2", check=False, env=env)
  assert again.returncode == 1 and "a0.25_r32 trained" not in again.stdout
  assert "cell 1 a0.5_r32_model.activation=no_such_activation FAILED" in again.stdout


def test_cells_per_device_environment_on_gpus():
  from sweeps.launch import slot_environment
  assert slot_environment(3, [], 2) == {}
  assert slot_environment(0, ["0", "1"], 1) == {"CUDA_VISIBLE_DEVICES": "0"}
  slots = [slot_environment(slot, ["0", "1"], 3) for slot in range(6)]
  assert [s["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1"] * 3  # three processes on each GPU
  assert all(s["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and s["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.300"
             for s in slots)


@pytest.mark.slow
def test_bad_cells_per_device(tmp_path):
  path = write_grid(tmp_path, FOUR_CELLS)
  result = launch("--config", path, "--workdir", str(tmp_path / "w"), "--cells-per-device", "0", check=False)
  assert_one_line_error(result, "--cells-per-device 0 is not allowed: it must be >= 1")
  result = launch("--config", path, "--workdir", str(tmp_path / "w"), "--cells-per-device", "2", "--parallel", "2",
                  check=False)
  assert_one_line_error(result, "--cells-per-device goes with the local executor alone")


# --- seeds and spread -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_seeds_repeat_every_cell_first_seeds_first(tmp_path):
  path = write_grid(tmp_path, "def sweep(add, arg):\n  add(alpha=0.25)\n  add(alpha=0.5)\n")
  sweep = grid.load(path, [("seed", "3")], seeds=2)
  assert [c.name for c in sweep.cells] == ["a0.25_r32", "a0.5_r32", "a0.25_r32_seed=4", "a0.5_r32_seed=4"]
  assert [c.config.seed for c in sweep.cells] == [3, 3, 4, 4]
  rows = [results.cell_row(str(tmp_path), c.name, c.overrides) for c in sweep.cells]  # grouped by sweep.json's data
  assert [(r["group"], r["seed"]) for r in rows] == [("a0.25_r32", 3), ("a0.5_r32", 3), ("a0.25_r32", 4),
                                                     ("a0.5_r32", 4)]
  assert [r["key"] for r in rows[:2]] == [r["key"] for r in rows[2:]] and rows[0]["key"] != rows[1]["key"]
  assert_one_line_error(launch("--config", path, "--list", "--seeds", "0", check=False), "--seeds 0", ">= 1")
  seeded = write_grid(tmp_path, "def sweep(add, arg):\n  add(alpha=0.25, seed=1)\n", name="seeded.py")
  assert_one_line_error(launch("--config", seeded, "--list", "--seeds", "2", check=False), "--seeds 2",
                        "set seed themselves")


def sweep_rows(sweep, started=lambda cell: True):
  """The rows sweeps.results reads for a sweep whose cells in `started` have written their config.json."""
  rows = []
  for cell in sweep.cells:
    config = json.loads(json.dumps(cell.config.to_dict(), default=str)) if started(cell) else {}
    overrides = json.loads(json.dumps(cell.overrides, default=str))  # as sweep.json holds them
    rows.append({**results.cell_row("/nonexistent", cell.name, overrides), "config": config})
  return rows


@pytest.mark.parametrize("spec", ["table4.py", "table5.py:data=imagenet", "grid16.py", "mixconv.py"])
def test_series_are_what_a_cell_sets_beside_the_grid_as_its_name_says(spec):
  sweep = grid.load(os.path.join(REPO, "experiments", spec), seeds=2)
  name_tails = [c.name.split("_", 2)[2] if c.name.count("_") >= 2 else "" for c in sweep.cells]
  name_tails = [tail.replace("_seed=1", "").replace("seed=1", "") for tail in name_tails]
  assert results.series_names(sweep_rows(sweep)) == name_tails
  # Only some cells started: fields the baseline leaves alone still compare with the base config's value.
  partial = sweep_rows(sweep, started=lambda cell: cell.index % 3 == 2)
  assert results.series_names(partial) == name_tails


def test_a_sweep_of_a_field_in_every_cell_takes_its_first_cell_as_the_plain_grid(tmp_path):
  sweep = grid.load(write_grid(tmp_path, FOUR_CELLS))
  assert results.series_names(sweep_rows(sweep)) == ["", "optim.base_learning_rate=0.05"] * 2
  assert results.varied_fields(sweep_rows(sweep)) == ["alpha", "optim.base_learning_rate"]


def test_a_pair_is_out_of_order_only_beyond_the_noise():
  def group(mean, std, n):
    return {"test_top1": mean, "test_top1_std": std, "n": n}
  assert trends.out_of_order(group(0.80, None, 1), group(0.799, None, 1))  # one seed: any fall counts
  assert not trends.out_of_order(group(0.80, None, 1), group(0.801, None, 1))
  # 3 seeds with std 0.01: the standard error of the difference is 0.01 * sqrt(2 / 3) = 0.0082
  assert not trends.out_of_order(group(0.80, 0.01, 3), group(0.785, 0.01, 3))  # fall 0.015 < 2 x 0.0082
  assert trends.out_of_order(group(0.80, 0.01, 3), group(0.78, 0.01, 3))  # fall 0.020 > 0.0163


def test_each_seed_alone_gets_its_own_trend_check_and_spearman():
  def row(alpha, resolution, seed, top1):
    return {"cell": f"a{alpha:g}_r{resolution}" + (f"_seed={seed}" if seed else ""), "alpha": alpha,
            "resolution": resolution, "variant": "standard", "mult_adds": alpha * alpha * resolution * resolution,
            "params": alpha, "status": "ok", "error": None, "test_top1": top1, "test_top5": 1.0,
            "train_seconds": 1.0, "images_per_second": 1.0, "latency_ms": None, "seed": seed,
            "key": f"{alpha} {resolution}", "group": f"a{alpha:g}_r{resolution}", "series": "", "config": {}}
  # Seed 0 ranks the 2 x 2 grid perfectly; seed 1 inverts both resolution pairs.
  rows = [row(0.5, 32, 0, 0.70), row(0.5, 40, 0, 0.72), row(1.0, 32, 0, 0.74), row(1.0, 40, 0, 0.76),
          row(0.5, 32, 1, 0.73), row(0.5, 40, 1, 0.71), row(1.0, 32, 1, 0.77), row(1.0, 40, 1, 0.75)]
  table = markdown.each_seed_table(rows)
  assert "| 0 | 1.00 | 0 of 4 |" in table and "| 1 | 0.60 | 2 of 4 |" in table
  assert table[-1] == "| median | 0.80 | 1 |"
  assert markdown.each_seed_table([r for r in rows if r["seed"] == 0]) == []  # one seed: no table


@pytest.mark.slow
def test_two_seeds_per_cell_give_mean_std_and_error_bars(tmp_path):
  import statistics
  from matplotlib.container import ErrorbarContainer
  from mnet_jax import metrics
  path = write_grid(tmp_path, "def sweep(add, arg):\n  add(alpha=0.25)\n  add(alpha=0.5)\n")
  workdir = tmp_path / "sweep"
  result = launch("--config", path, "--workdir", str(workdir), "--seeds", "2")
  assert "a0.5_r32_seed=1 trained" in result.stdout and "latency a0.5_r32_seed=1" in result.stdout
  rows = read_csv(workdir / "results.csv")
  assert [(r["cell"], r["n"], r["seeds"], r["status"]) for r in rows] == [("a0.25_r32", "2", "0 1", "ok"),
                                                                        ("a0.5_r32", "2", "0 1", "ok")]
  text = (workdir / "report.md").read_text()
  for row in rows:
    top1 = [metrics.final_metrics(str(workdir / name))["test_top1"] for name in (row["cell"], row["cell"] + "_seed=1")]
    assert float(row["test_top1"]) == pytest.approx(statistics.mean(top1))
    assert float(row["test_top1_std"]) == pytest.approx(statistics.stdev(top1))
    latencies = [json.loads((workdir / name / "latency.json").read_text())["latency_ms"]
                 for name in (row["cell"], row["cell"] + "_seed=1")]
    assert float(row["latency_ms_std"]) == pytest.approx(statistics.stdev(latencies), rel=1e-3)
    assert (f"| {row['cell']} | 0.25 |" in text or f"| {row['cell']} | 0.50 |" in text)
    assert f"{100 * statistics.mean(top1):.2f} ± {100 * statistics.stdev(top1):.2f} %" in text
  assert "2 seeds per cell" in text
  for x_key in ("mult_adds", "params", "latency_ms"):
    figure = figures.plot(results.rows_of(str(workdir)), x_key, x_key, overlay=False)
    bars = [c for c in figure.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert bars and all(c.has_yerr for c in bars)
    half_lengths = sorted(round(float(abs(segment[1][1] - segment[0][1])) / 2, 6)
                          for c in bars for segment in c.lines[2][0].get_segments())
    assert half_lengths == sorted(round(100 * float(r["test_top1_std"]), 6) for r in rows)
