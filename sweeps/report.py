r"""Rebuilds a sweep's results.csv, plots and report.md from its cells' metrics.jsonl (at any time, even mid-sweep).

  python -m sweeps.report --workdir runs/demo [--latency]

The cells are those listed in DIR/sweep.json (written by sweeps.launch), or else every subdirectory with a
config.json (e.g. converted pretrained checkpoints after `mnet_jax.evaluate`). Cells that differ only by seed
(`<name>_seed=S`) form one group: results.csv has a row per group with the mean, the standard deviation over its
finished seeds and their number n; the figures draw the mean with a ±1 std error bar. Writes DIR/results.csv,
DIR/acc_vs_mult_adds.png/.svg (the paper's Figure 4), DIR/acc_vs_params.png/.svg (Figure 5),
DIR/acc_vs_latency.png and DIR/report.md (the grid's Tables 4-7 beside the paper's); for a sweep over the
depthwise kernels also DIR/acc_vs_mult_adds_kernels.png/.svg (sweeps/report_kernels.py). `--latency` first
measures every finished cell's batch-1 latency again (sweeps/latency.py).
"""

import csv
import hashlib
import io
import json
import math
import os
import re
import statistics

from mnet_jax import metrics, paper, process
from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.workdir import write_atomically
from sweeps import grid, report_kernels

COLUMNS = ("cell", "alpha", "resolution", "variant", "mult_adds", "params", "test_top1", "test_top5", "train_seconds",
           "images_per_second", "latency_ms", "status", "error")
GROUP_COLUMNS = ("cell", "alpha", "resolution", "variant", "n", "seeds", "mult_adds", "params", "test_top1",
                 "test_top1_std", "test_top5", "test_top5_std", "train_seconds", "images_per_second", "latency_ms",
                 "latency_ms_std", "status", "error")  # results.csv: one row per group of seeds
AVERAGED = ("test_top1", "test_top5", "train_seconds", "images_per_second", "latency_ms")
WITH_STD = ("test_top1", "test_top5", "latency_ms")
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


def write_csv(path, groups):
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, GROUP_COLUMNS, lineterminator="\n", extrasaction="ignore")
  writer.writeheader()
  writer.writerows({k: "" if v is None else v for k, v in group.items()} for group in groups)
  write_atomically(path, buffer.getvalue())


def finished(rows):
  return [r for r in rows if r["status"] == "ok"]


def group_name(cell):
  """The cell's name without its seed: every cell of a group trains the same config but for config.seed."""
  return re.sub(r"_seed=-?\d+", "", cell)


def seed_of(cell):
  found = re.search(r"_seed=(-?\d+)", cell)
  return int(found.group(1)) if found else 0


def series_of(name, variant):
  """What the group's cells set besides alpha, resolution and seed (the name's tail: "variant=full_conv", ...);
  "" for the sweep's plain grid. Each series is drawn as its own set of lines."""
  found = re.match(r"a[0-9.]+_r\d+_?(.*)$", name)
  if found:
    return found.group(1)
  return "" if variant in (None, "standard") else f"variant={variant}"


def mean_std(values):
  mean = sum(values) / len(values)
  std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
  return mean, std


def groups_of(rows):
  """One record per group of cells that differ only by seed, in the sweep's order: GROUP_COLUMNS plus "series";
  the numbers are the mean (and *_std the sample standard deviation) over the group's finished cells."""
  by_name = {}
  for row in rows:
    by_name.setdefault(group_name(row["cell"]), []).append(row)
  groups = []
  for name, cells in by_name.items():
    done = finished(cells)
    first = (done or cells)[0]
    group = {"cell": name, "alpha": first["alpha"], "resolution": first["resolution"], "variant": first["variant"],
             "mult_adds": first["mult_adds"], "params": first["params"], "n": len(done), "seeds": " ".join(str(seed_of(r["cell"])) for r in done),
             "series": series_of(name, first["variant"])}
    for column in AVERAGED:
      values = [r[column] for r in done if r[column] is not None]
      mean, std = mean_std(values) if values else (None, None)
      group[column] = mean
      if column in WITH_STD:
        group[f"{column}_std"] = std
    unfinished = [r for r in cells if r["status"] != "ok"]
    group["status"] = "ok" if not unfinished else (
        unfinished[0]["status"] + (f" ({len(done)} of {len(cells)} seeds ok)" if done else ""))
    group["error"] = unfinished[0]["error"] if unfinished else None
    groups.append(group)
  return groups


def points(rows, x_key):
  """The groups with at least one finished cell and a value of x_key."""
  return [g for g in groups_of(rows) if g["n"] and g[x_key] is not None]


def spearman(xs, ys):
  """Spearman's rank correlation (ties get their mean rank), or None for fewer than 3 points or a constant."""
  from scipy import stats
  if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
    return None
  return float(stats.spearmanr(xs, ys).statistic)


def paper_points():
  """The paper's ImageNet points: TF-Slim's 16 published checkpoints (Figure 4/5's grid) and Tables 6-7."""
  slim = [{"alpha": float(r["alpha"]), "resolution": int(r["resolution"]), "mult_adds": float(r["million_macs"]) * 1e6,
           "params": float(r["million_params"]) * 1e6, "top1": float(r["top1"])} for r in paper.slim_checkpoints()]
  tables = [{"alpha": float(r["alpha"]), "resolution": int(r["resolution"]),
             "mult_adds": float(r["million_mult_adds"]) * 1e6, "params": float(r["million_params"]) * 1e6,
             "top1": float(r["imagenet_top1"])}
            for r in paper.tables() if r["table"] in ("6", "7")]
  return slim, tables


def plot(rows, x_key, x_label, overlay, title_note=""):
  """The figure of test top-1 against x_key: for the plain grid a solid line per alpha and a dashed line per resolution (the
  paper's Figure 4 style), for every other series (a variant, a swept field) its own markers; each point is the
  mean over its seeds with a ±1 std error bar."""
  import matplotlib
  from matplotlib.figure import Figure  # no pyplot: no global figure state, no backend switch in notebooks
  figure = Figure(figsize=(7.5, 5.2))
  axes = figure.subplots()
  groups = points(rows, x_key)
  colors = matplotlib.colormaps["viridis"]
  markers = "sD^vP*Xh"

  def draw(line, style, **kwargs):
    spread = any(g["test_top1_std"] is not None for g in line)
    yerr = [100 * (g["test_top1_std"] or 0) for g in line] if spread else None
    axes.errorbar([g[x_key] for g in line], [100 * g["test_top1"] for g in line], yerr=yerr, fmt=style, capsize=3,
                  **kwargs)

  series = sorted({g["series"] for g in groups}, key=lambda name: (name != "", name))
  for k, name in enumerate(series):
    members = [g for g in groups if g["series"] == name]
    alphas = sorted({g["alpha"] for g in members if g["alpha"] is not None}, reverse=True)
    for i, alpha in enumerate(alphas):
      line = sorted((g for g in members if g["alpha"] == alpha), key=lambda g: g[x_key])
      if name == "":
        draw(line, "o-", color=colors(i / max(len(alphas) - 1, 1) * 0.85), label=f"α = {alpha:g}")
      else:
        draw(line, markers[(k - 1) % len(markers)] + ":", color=f"C{k % 10}", label=name if i == 0 else None)
    if name != "":
      continue
    for resolution in sorted({g["resolution"] for g in members}, reverse=True):
      line = sorted((g for g in members if g["resolution"] == resolution), key=lambda g: g[x_key])
      if len(line) > 1:
        axes.plot([g[x_key] for g in line], [100 * g["test_top1"] for g in line], "--", color="0.6", linewidth=0.9)
      if line:
        axes.annotate(f"{resolution}px", (line[-1][x_key], 100 * line[-1]["test_top1"]), textcoords="offset points",
                      xytext=(4, -10), fontsize=7, color="0.4")
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
  axes.set_title(f"Accuracy vs {x_label.split(' (')[0]} (dashed: fixed resolution){title_note}")
  if axes.get_legend_handles_labels()[0]:
    axes.legend(fontsize=8)
  figure.tight_layout()
  return figure


def save(figure, path_stem, formats):
  """Writes the figure as path_stem.<format> for each format (atomically); returns the paths."""
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
  """{table number: [(paper row, our group or None)]} for Tables 4-7 where the grid has at least one matching cell."""
  from mnet_jax.count import variant_of
  groups = groups_of(rows)
  our_resolutions = sorted({g["resolution"] for g in groups if g["resolution"] is not None}, reverse=True)
  tables = {}
  for row in paper.tables():
    if row["table"] not in ("4", "5", "6", "7") or not row["alpha"]:
      continue
    resolution = resolution_for(int(row["resolution"]), our_resolutions)
    ours = [g for g in groups if g["alpha"] == float(row["alpha"]) and g["resolution"] == resolution and
            g["variant"] == variant_of(row["model"])]
    tables.setdefault(int(row["table"]), []).append((row, ours[0] if ours else None))
  return {n: pairs for n, pairs in sorted(tables.items()) if any(ours for _, ours in pairs)}


def out_of_order(low, high):
  """Whether top-1 falls from `low` to `high` (the larger network) by more than the noise: when both groups have
  >= 2 seeds, by more than twice the standard error of the difference of their means; with one seed, at all."""
  drop = low["test_top1"] - high["test_top1"]
  if low["n"] < 2 or high["n"] < 2:
    return drop >= 0
  return drop > 2 * math.sqrt(low["test_top1_std"] ** 2 / low["n"] + high["test_top1_std"] ** 2 / high["n"])


def trend_exceptions(rows):
  """Where test top-1 (mean over seeds) does not rise with alpha at a fixed resolution, or with resolution at a
  fixed alpha, within each series: (number of neighbouring pairs checked, one line per pair out of order, one
  line per pair that falls by less than the noise)."""
  groups = points(rows, "test_top1")
  exceptions, within_noise, checked = [], [], 0
  for series in sorted({g["series"] for g in groups}):
    members = [g for g in groups if g["series"] == series]
    for fixed, varied, symbol in (("resolution", "alpha", "α"), ("alpha", "resolution", "ρ")):
      for value in sorted({g[fixed] for g in members}):
        line = sorted((g for g in members if g[fixed] == value), key=lambda g: g[varied])
        for low, high in zip(line, line[1:]):
          checked += 1
          if high["test_top1"] > low["test_top1"]:
            continue
          text = (f"{series + ', ' if series else ''}at {fixed} {value:g}, top-1 does not rise from "
                  f"{symbol}={low[varied]:g} to {symbol}={high[varied]:g} ({top1_text(low)} -> {top1_text(high)})")
          (exceptions if out_of_order(low, high) else within_noise).append(text)
  return checked, exceptions, within_noise


def number(value, scale=1.0, digits=2, suffix=""):
  return "–" if value is None or value == "" else f"{value / scale:.{digits}f}{suffix}"


def with_std(group, column, scale=1.0, digits=2, suffix=""):
  """"mean ± std" over the group's seeds (just the mean for one seed)."""
  text = number(group[column], scale, digits)
  if group.get(f"{column}_std") is not None:
    text += f" ± {number(group[f'{column}_std'], scale, digits)}"
  return text + suffix if group[column] is not None else text


def top1_text(group):
  return with_std(group, "test_top1", 0.01, suffix=" %")


def results_table(rows):
  """The groups of cells (seeds averaged: mean ± std over n seeds) as a markdown table."""
  lines = ["| cell | α | resolution | variant | n | test top-1 | test top-5 | Mult-Adds (M) | params (M) | latency "
           "(ms, batch 1) | train time (s) | images/s | status |",
           "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
  for g in groups_of(rows):
    status = g["status"] + (f": {g['error']}" if g["error"] else "")
    lines.append(f"| {g['cell']} | {number(g['alpha'])} | {g['resolution'] or '–'} | {g['variant'] or '–'} | "
                 f"{g['n']} | {top1_text(g)} | {with_std(g, 'test_top5', 0.01, suffix=' %')} | "
                 f"{number(g['mult_adds'], 1e6, 1)} | {number(g['params'], 1e6, 3)} | "
                 f"{with_std(g, 'latency_ms', digits=3)} | {number(g['train_seconds'], digits=0)} | "
                 f"{number(g['images_per_second'], digits=0)} | {status} |")
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
                   f"{row['million_params']} | {ours.get('cell', '–')} | {top1_text(ours) if ours else '– %'} | "
                   f"{number(ours.get('mult_adds'), 1e6, 1)} | {number(ours.get('params'), 1e6, 3)} |")
  return "\n".join(lines)


def latency_note(workdir, rows):
  """How the latencies were measured: runs, device and, on a CPU, threads; None without any."""
  records = [read_json(os.path.join(workdir, r["cell"], "latency.json")) for r in rows if r["latency_ms"] is not None]
  if not records:
    return None
  devices = sorted({r["device"] + (f", {r['threads']} threads" if r.get("threads") else "") for r in records})
  return (f"median of >= {min(r['runs'] for r in records)} jitted batch-1 forward passes per cell on "
          f"{'; '.join(devices)}")


def trend_section(rows):
  checked, exceptions, within_noise = trend_exceptions(rows)
  if not checked:
    return "The grid has no two cells that differ only in α or only in resolution."
  lines = [f"- {e}" for e in exceptions]
  if within_noise:
    lines += ["", "Within the noise (a fall smaller than twice the standard error of the difference of the two "
              "means over their seeds):", ""] + [f"- {e}" for e in within_noise]
  if not exceptions:
    lines.insert(0, f"Yes: test top-1 rises with α at every resolution and with resolution at every α, beyond the "
                 f"noise ({checked} pairs)." if within_noise else
                 f"Yes: test top-1 rises with α at every resolution and with resolution at every α ({checked} pairs).")
  else:
    lines.append(f"\n({len(exceptions)} of {checked} neighbouring pairs out of order.)")
  plain = plain_groups(rows)
  correlations = [("test top-1", top1_spearman(rows))]
  timed = [g for g in plain if g["latency_ms"] is not None]
  correlations.append(("batch-1 latency", spearman([g["mult_adds"] for g in timed], [g["latency_ms"] for g in timed])))
  found = [f"{what} {value:.2f}" for what, value in correlations if value is not None]
  if found:
    lines += ["", f"Spearman's rank correlation with Mult-Adds over {len(plain)} groups: {', '.join(found)}."]
  return "\n".join(lines + each_seed(rows))


def plain_groups(rows):
  """The groups of the sweep's plain grid (no series) with a top-1 and Mult-Adds."""
  return [g for g in points(rows, "test_top1") if g["series"] == "" and g["mult_adds"] is not None]


def top1_spearman(rows):
  plain = plain_groups(rows)
  return spearman([g["mult_adds"] for g in plain], [g["test_top1"] for g in plain])


def each_seed(rows):
  """With several seeds: the trend check and Spearman of each seed's cells alone, and their medians."""
  seeds = sorted({seed_of(r["cell"]) for r in finished(rows)})
  if len(seeds) < 2:
    return []
  lines = ["", "Each seed alone (raw top-1, any fall counts):", "",
           "| seed | Spearman of top-1 with Mult-Adds | pairs out of order |", "| ---: | ---: | ---: |"]
  correlations, counts = [], []
  for seed in seeds:
    mine = [r for r in rows if seed_of(r["cell"]) == seed]
    checked, exceptions, _ = trend_exceptions(mine)
    correlations.append(top1_spearman(mine))
    counts.append(len(exceptions))
    lines.append(f"| {seed} | {number(correlations[-1])} | {counts[-1]} of {checked} |")
  known = [c for c in correlations if c is not None]
  lines.append(f"| median | {number(statistics.median(known)) if known else '–'} | {statistics.median(counts):g} |")
  return lines


def markdown(workdir, rows, dataset):
  description = grid.read_description(workdir) or {}
  name = description.get("name", os.path.basename(workdir))
  counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "incomplete", "pending")}
  seeds = description.get("seeds", 1)
  lines = [f"# Sweep {name}", "",
           f"Dataset `{dataset}`; {len(rows)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) +
           (f"; {seeds} seeds per cell, shown as mean ± standard deviation over the n finished ones." if seeds > 1
            else "."),
           f"Rebuilt by `python -m sweeps.report --workdir {workdir}` from the cells' metrics.jsonl.", "",
           results_table(rows), "", "## Beside the paper", "", paper_section(rows, dataset), "",
           "## Does accuracy rise with width and resolution?", "", trend_section(rows), "",
           "## Figures", "", "![accuracy vs Mult-Adds (Figure 4)](acc_vs_mult_adds.png)", "",
           "![accuracy vs params (Figure 5)](acc_vs_params.png)", "", "![accuracy vs latency](acc_vs_latency.png)"]
  note = latency_note(workdir, rows)
  if note:
    lines += ["", f"Latency: {note}, one cell at a time after the cells trained "
              f"(`python -m sweeps.report --workdir {workdir} --latency` measures it again)."]
  return "\n".join(lines) + "\n"


def write(workdir):
  """Writes results.csv (one row per group of seeds), the plots and report.md; returns their paths."""
  workdir = os.path.abspath(workdir)
  rows = rows_of(workdir)
  dataset = dataset_of(workdir, rows)
  overlay = dataset == "imagenet2012"
  paths = {"results": os.path.join(workdir, "results.csv"), "report": os.path.join(workdir, "report.md")}
  write_csv(paths["results"], groups_of(rows))
  note = latency_note(workdir, rows)
  paths["plots"] = (
      save(plot(rows, "mult_adds", "Mult-Adds (log scale)", overlay), os.path.join(workdir, "acc_vs_mult_adds"),
           ("png", "svg"))
      + save(plot(rows, "params", "parameters (log scale)", overlay), os.path.join(workdir, "acc_vs_params"),
             ("png", "svg"))
      + save(plot(rows, "latency_ms", "latency, batch 1 (ms, log scale)", False,
                  f"\n{note.split(' on ')[-1]}" if note else ""), os.path.join(workdir, "acc_vs_latency"), ("png",)))
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
  parser.add_argument("--latency", action="store_true", help="measure every finished cell's batch-1 latency again "
                      "first, one cell at a time (run it with nothing else busy on the machine)")
  args = parser.parse_args(argv)
  process.setup_process()
  if args.latency:
    from sweeps import latency
    workdir = os.path.abspath(args.workdir)
    latency.measure_cells(workdir, [r["cell"] for r in rows_of(workdir)], again=True)
  paths = write(args.workdir)
  print(f"report: {paths['report']}\nresults: {paths['results']}\nplots: {', '.join(paths['plots'])}")


if __name__ == "__main__":
  main()
