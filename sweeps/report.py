r"""Rebuilds a sweep's results.csv, plots and report.md from its cells' metrics.jsonl (at any time, even mid-sweep).

  python -m sweeps.report --workdir runs/demo

The cells are those listed in DIR/sweep.json (written by sweeps.launch), or else every subdirectory with a
config.json (e.g. converted pretrained checkpoints after `mnet_jax.evaluate`). Writes DIR/results.csv,
DIR/acc_vs_mult_adds.png/.svg (the paper's Figure 4), DIR/acc_vs_params.png/.svg (Figure 5),
DIR/acc_vs_latency.png and DIR/report.md (the grid's Tables 4-7 beside the paper's); for a sweep over the
depthwise kernels also DIR/acc_vs_mult_adds_kernels.png/.svg (sweeps/report_kernels.py).
"""

import csv
import hashlib
import io
import json
import os

from mnet_jax import metrics, paper, process
from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.workdir import write_atomically
from sweeps import grid, report_kernels

COLUMNS = ("cell", "alpha", "resolution", "variant", "mult_adds", "params", "test_top1", "test_top5", "train_seconds",
           "images_per_second", "latency_ms", "status", "error")
PAPER_RESOLUTIONS = (224, 192, 160, 128)  # the paper's rho = 1, 6/7, 5/7, 4/7
PLOTS = ("acc_vs_mult_adds.png", "acc_vs_mult_adds.svg", "acc_vs_params.png", "acc_vs_params.svg",
         "acc_vs_latency.png")


def read_json(path):
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def cell_names(workdir):
  description = grid.read_description(workdir)
  if description is not None:
    return [c["name"] for c in description["cells"]]
  return sorted(name for name in os.listdir(workdir) if os.path.exists(os.path.join(workdir, name, "config.json")))


def cell_row(workdir, name):
  """One results.csv row; status is ok (final metrics), failed (error.json), incomplete (started) or pending."""
  cell_dir = os.path.join(workdir, name)
  config = read_json(os.path.join(cell_dir, "config.json")) or {}
  final = metrics.final_metrics(cell_dir) or {}
  latency = read_json(os.path.join(cell_dir, "latency.json")) or {}
  error = read_json(os.path.join(cell_dir, "error.json"))
  row = {"cell": name, "alpha": config.get("alpha"), "resolution": config.get("resolution"),
         "variant": config.get("variant")}
  for column in COLUMNS[1:-2]:
    if final.get(column) is not None:
      row[column] = final[column]
  row["latency_ms"] = latency.get("latency_ms")
  if final:
    row["status"] = "ok"
  elif error:
    row["status"], row["error"] = "failed", error["error"]
  else:
    row["status"] = "incomplete" if os.path.exists(os.path.join(cell_dir, "metrics.jsonl")) else "pending"
  return {column: row.get(column) for column in COLUMNS}


def rows_of(workdir):
  if not os.path.isdir(workdir):
    raise ConfigError(f"workdir {workdir!r} does not exist")
  return [cell_row(workdir, name) for name in cell_names(workdir)]


def dataset_of(workdir, rows):
  for row in rows:
    config = read_json(os.path.join(workdir, row["cell"], "config.json"))
    if config:
      return config.get("data", {}).get("name")
  return None


def write_csv(path, rows):
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
  writer.writeheader()
  writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
  write_atomically(path, buffer.getvalue())


def finished(rows):
  return [r for r in rows if r["status"] == "ok"]


def grid_points(rows, x_key):
  """One point per (alpha, resolution) of the standard variant: x_key and test top-1 averaged over its cells (seeds)."""
  cells = {}
  for r in finished(rows):
    if r["variant"] == "standard" and r[x_key] is not None:
      cells.setdefault((r["alpha"], r["resolution"]), []).append(r)
  return [{"alpha": alpha, "resolution": resolution, "x": sum(r[x_key] for r in group) / len(group),
           "top1": sum(r["test_top1"] for r in group) / len(group)}
          for (alpha, resolution), group in sorted(cells.items())]


def paper_points():
  """The paper's ImageNet points: TF-Slim's 16 published checkpoints (Figure 4/5's grid) and Tables 6-7."""
  slim = [{"alpha": float(r["alpha"]), "resolution": int(r["resolution"]), "mult_adds": float(r["million_macs"]) * 1e6,
           "params": float(r["million_params"]) * 1e6, "top1": float(r["top1"])} for r in paper.slim_checkpoints()]
  tables = [{"alpha": float(r["alpha"]), "resolution": int(r["resolution"]),
             "mult_adds": float(r["million_mult_adds"]) * 1e6, "params": float(r["million_params"]) * 1e6,
             "top1": float(r["imagenet_top1"])}
            for r in paper.tables() if r["table"] in ("6", "7")]
  return slim, tables


def plot(rows, x_key, x_label, path_stem, formats, overlay):
  """Test top-1 against x_key: a solid line per alpha, a dashed line per resolution (the paper's Figure 4 style)."""
  import matplotlib
  from matplotlib.figure import Figure  # no pyplot: no global figure state, no backend switch in notebooks
  figure = Figure(figsize=(7.5, 5.2))
  axes = figure.subplots()
  points = grid_points(rows, x_key)
  alphas = sorted({p["alpha"] for p in points}, reverse=True)
  resolutions = sorted({p["resolution"] for p in points}, reverse=True)
  colors = matplotlib.colormaps["viridis"]
  for i, alpha in enumerate(alphas):
    line = sorted((p for p in points if p["alpha"] == alpha), key=lambda p: p["x"])
    axes.plot([p["x"] for p in line], [100 * p["top1"] for p in line], "o-",
              color=colors(i / max(len(alphas) - 1, 1) * 0.85), label=f"α = {alpha:g}")
  for resolution in resolutions:
    line = sorted((p for p in points if p["resolution"] == resolution), key=lambda p: p["x"])
    if len(line) > 1:
      axes.plot([p["x"] for p in line], [100 * p["top1"] for p in line], "--", color="0.6", linewidth=0.9)
    if line:
      axes.annotate(f"{resolution}px", (line[-1]["x"], 100 * line[-1]["top1"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=7, color="0.4")
  for variant in sorted({r["variant"] for r in finished(rows)} - {"standard"}):
    points = [r for r in finished(rows) if r["variant"] == variant and r[x_key] is not None]
    axes.plot([r[x_key] for r in points], [100 * r["test_top1"] for r in points], "D", label=variant)
  if overlay and x_key in ("mult_adds", "params"):
    slim, tables = paper_points()
    axes.plot([p[x_key] for p in slim], [p["top1"] for p in slim], "o", markerfacecolor="none", color="k",
              label="TF-Slim checkpoints (ImageNet)")
    axes.plot([p[x_key] for p in tables], [p["top1"] for p in tables], "kx", markersize=8,
              label="paper Tables 6-7 (ImageNet)")
  axes.set_xscale("log")
  axes.set_xlabel(x_label)
  axes.set_ylabel("test top-1 (%)")
  axes.grid(True, which="both", alpha=0.3)
  axes.set_title(f"Accuracy vs {x_label.split(' (')[0]} (dashed: fixed resolution)")
  if axes.get_legend_handles_labels()[0]:
    axes.legend(fontsize=8)
  figure.tight_layout()
  paths = []
  for extension in formats:
    path = f"{path_stem}.{extension}"
    image = io.BytesIO()
    figure.savefig(image, format=extension, dpi=120)
    write_atomically(path, image.getvalue())
    paths.append(path)
  return paths


def resolution_for(paper_resolution, our_resolutions):
  """This grid's resolution for one of the paper's: the same value, or the one at the same rho = resolution / 224,
  taking the grid's largest resolution as its rho = 1 (Fashion-MNIST's 56/48/40/32 for 224/192/160/128)."""
  if paper_resolution in our_resolutions:
    return paper_resolution
  same_rho = paper_resolution * our_resolutions[0] / PAPER_RESOLUTIONS[0]
  return int(same_rho) if same_rho in our_resolutions else None


def paper_tables(rows):
  """{table number: [(paper row, our row or None)]} for Tables 4-7 where the grid has at least one matching cell."""
  from mnet_jax.count import variant_of
  our_resolutions = sorted({r["resolution"] for r in rows if r["resolution"] is not None}, reverse=True)
  tables = {}
  for row in paper.tables():
    if row["table"] not in ("4", "5", "6", "7") or not row["alpha"]:
      continue
    resolution = resolution_for(int(row["resolution"]), our_resolutions)
    ours = [r for r in rows if r["alpha"] == float(row["alpha"]) and r["resolution"] == resolution and
            r["variant"] == variant_of(row["model"])]
    tables.setdefault(int(row["table"]), []).append((row, ours[0] if ours else None))
  return {n: pairs for n, pairs in sorted(tables.items()) if any(ours for _, ours in pairs)}


def trend_exceptions(rows):
  """Where test top-1 (mean over seeds) does not rise with alpha at a fixed resolution, or with resolution at a
  fixed alpha: (number of neighbouring pairs checked, one line per exception)."""
  points = grid_points(rows, "test_top1")
  exceptions, checked = [], 0
  for fixed, varied, symbol in (("resolution", "alpha", "α"), ("alpha", "resolution", "ρ")):
    for value in sorted({p[fixed] for p in points}):
      line = sorted((p for p in points if p[fixed] == value), key=lambda p: p[varied])
      for low, high in zip(line, line[1:]):
        checked += 1
        if high["top1"] <= low["top1"]:
          exceptions.append(f"at {fixed} {value:g}, top-1 does not rise from {symbol}={low[varied]:g} to "
                            f"{symbol}={high[varied]:g} ({100 * low['top1']:.2f} % -> {100 * high['top1']:.2f} %)")
  return checked, exceptions


def number(value, scale=1.0, digits=2, suffix=""):
  return "–" if value is None or value == "" else f"{value / scale:.{digits}f}{suffix}"


def results_table(rows):
  """The cells as a markdown table."""
  lines = ["| cell | α | resolution | variant | test top-1 | test top-5 | Mult-Adds (M) | params (M) | latency (ms, "
           "batch 1) | train time (s) | images/s | status |",
           "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
  for r in rows:
    status = r["status"] + (f": {r['error']}" if r["error"] else "")
    lines.append(f"| {r['cell']} | {number(r['alpha'])} | {r['resolution'] or '–'} | {r['variant'] or '–'} | "
                 f"{number(r['test_top1'], 0.01)} % | {number(r['test_top5'], 0.01)} % | "
                 f"{number(r['mult_adds'], 1e6, 1)} | {number(r['params'], 1e6, 3)} | {number(r['latency_ms'])} | "
                 f"{number(r['train_seconds'], digits=0)} | {number(r['images_per_second'], digits=0)} | {status} |")
  return "\n".join(lines)


def paper_section(rows, dataset):
  """Tables 4-7 as far as the grid covers them, this run's cells beside the paper's rows (markdown)."""
  tables = paper_tables(rows)
  if not tables:
    return "The grid covers none of the paper's Tables 4-7."
  lines = ["Both columns are ImageNet top-1 on the validation split." if dataset == "imagenet2012" else
           "The paper's numbers are ImageNet top-1 at 224/192/160/128 px; this grid's resolutions stand for them at the "
           "same ρ (its largest resolution is ρ = 1), and its Mult-Adds and params are for its own resolution and number of classes."]
  for table_number, pairs in tables.items():
    lines += ["", f"### Table {table_number}", "",
              "| paper model | paper top-1 | paper Mult-Adds (M) | paper params (M) | this cell | top-1 | "
              "Mult-Adds (M) | params (M) |",
              "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for row, ours in pairs:
      ours = ours or {}
      lines.append(f"| {row['model']} | {row['imagenet_top1']} % | {row['million_mult_adds']} | "
                   f"{row['million_params']} | {ours.get('cell', '–')} | {number(ours.get('test_top1'), 0.01)} % | "
                   f"{number(ours.get('mult_adds'), 1e6, 1)} | {number(ours.get('params'), 1e6, 3)} |")
  return "\n".join(lines)


def trend_section(rows):
  checked, exceptions = trend_exceptions(rows)
  if not checked:
    return "The grid has no two cells that differ only in α or only in resolution."
  if not exceptions:
    return f"Yes: test top-1 rises with α at every resolution and with resolution at every α ({checked} pairs)."
  return "\n".join(f"- {e}" for e in exceptions) + f"\n\n({len(exceptions)} of {checked} neighbouring pairs.)"


def markdown(workdir, rows, dataset):
  description = grid.read_description(workdir) or {}
  name = description.get("name", os.path.basename(workdir))
  counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "incomplete", "pending")}
  lines = [f"# Sweep {name}", "",
           f"Dataset `{dataset}`; {len(rows)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ".",
           f"Rebuilt by `python -m sweeps.report --workdir {workdir}` from the cells' metrics.jsonl.", "",
           results_table(rows), "", "## Beside the paper", "", paper_section(rows, dataset), "",
           "## Does accuracy rise with width and resolution?", "", trend_section(rows), "",
           "## Figures", "", "![accuracy vs Mult-Adds (Figure 4)](acc_vs_mult_adds.png)", "",
           "![accuracy vs params (Figure 5)](acc_vs_params.png)", "", "![accuracy vs latency](acc_vs_latency.png)"]
  latencies = [read_json(os.path.join(workdir, r["cell"], "latency.json")) for r in rows if r["latency_ms"] is not None]
  if latencies:
    lines += ["", f"Latency: median of {latencies[0]['runs']} jitted batch-1 forward passes on "
              f"{', '.join(sorted({record['device'] for record in latencies}))}, measured after each cell trained."]
  return "\n".join(lines) + "\n"


def write(workdir):
  """Writes results.csv, the plots and report.md; returns their paths."""
  workdir = os.path.abspath(workdir)
  rows = rows_of(workdir)
  dataset = dataset_of(workdir, rows)
  overlay = dataset == "imagenet2012"
  paths = {"results": os.path.join(workdir, "results.csv"), "report": os.path.join(workdir, "report.md")}
  write_csv(paths["results"], rows)
  paths["plots"] = (
      plot(rows, "mult_adds", "Mult-Adds (log scale)", os.path.join(workdir, "acc_vs_mult_adds"), ("png", "svg"),
           overlay)
      + plot(rows, "params", "parameters (log scale)", os.path.join(workdir, "acc_vs_params"), ("png", "svg"),
             overlay)
      + plot(rows, "latency_ms", "latency, batch 1 (ms, log scale)", os.path.join(workdir, "acc_vs_latency"),
             ("png",), False))
  text = markdown(workdir, rows, dataset)
  kernels = report_kernels.write(workdir, rows, dataset)
  if kernels:
    text += "\n## Depthwise kernel sizes (MixConv)\n\n" + kernels[0] + "\n"
    paths["plots"] += kernels[1]
  write_atomically(paths["report"], text)
  return paths


def log_to_wandb(workdir, sweep_name, wandb_config):
  """Logs the sweep's table and plots as one more run of the sweep's wandb group (offline unless configured)."""
  import ml_collections
  workdir = os.path.abspath(workdir)
  rows = rows_of(workdir)
  if not rows or any(r["status"] != "ok" for r in rows):
    return None  # the summary is for a complete sweep
  summary_config = ml_collections.ConfigDict(wandb_config.to_dict())
  summary_config.group = wandb_config.get("group") or sweep_name
  summary_config.name = f"{sweep_name}/summary"
  run_id = hashlib.sha256(f"{workdir}\nsummary".encode()).hexdigest()[:16]
  run = metrics.start_wandb(summary_config, {"sweep": sweep_name, "workdir": workdir}, workdir, run_id)
  if run is None:
    return None
  import wandb
  columns = [c for c in COLUMNS if c != "error"]
  table = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])
  run.log({"results": table,
           "acc_vs_mult_adds": wandb.plot.scatter(table, "mult_adds", "test_top1", title="test top-1 vs Mult-Adds"),
           "acc_vs_mult_adds_plot": wandb.Image(os.path.join(workdir, "acc_vs_mult_adds.png")),
           "acc_vs_params_plot": wandb.Image(os.path.join(workdir, "acc_vs_params.png"))})
  run.finish()
  return run_id


@exit_on_config_error
def main(argv=None):
  parser = OneLineArgumentParser(prog="python -m sweeps.report", description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="a sweep directory (sweeps.launch --workdir)")
  args = parser.parse_args(argv)
  process.setup_process()
  paths = write(args.workdir)
  print(f"report: {paths['report']}\nresults: {paths['results']}\nplots: {', '.join(paths['plots'])}")


if __name__ == "__main__":
  main()
