"""A sweep's results: one row per cell from its files, the cells grouped by seed, and DIR/results.csv.

The cells and what each sets (its overrides) come from DIR/sweep.json (written by sweeps.launch), or else every
subdirectory with a config.json is a cell of its own (e.g. converted pretrained checkpoints after
`mnet_jax.evaluate`). Cells whose overrides differ only by `seed` form one group; results.csv has a row per group
with the mean, the standard deviation over its finished seeds and their number n. A group's series is what its
cells set besides alpha and resolution (the figures draw each series apart). A cell's measurements after training
(latency.json, export/export.json) add their columns; the int8 drops are float32_top1 - int8 top-1 of one export,
in fractions like the top-1 columns.
"""

import csv
import io
import json
import math
import os

from mnet_jax import metrics
from mnet_jax.errors import ConfigError
from mnet_jax.workdir import write_atomically
from sweeps import grid

EXPORT_COLUMNS = ("litert_ms", "litert_int8_ms", "tflite_bytes", "float32_top1", "int8_top1", "int8_per_tensor_top1")
DROPS = (("int8_drop", "int8_top1"), ("int8_per_tensor_drop", "int8_per_tensor_top1"))  # float32_top1 - the int8
COLUMNS = ("cell", "alpha", "resolution", "variant", "mult_adds", "params", "test_top1", "test_top5", "train_seconds",
           "images_per_second", "latency_ms", *EXPORT_COLUMNS, *(drop for drop, _ in DROPS), "status", "error")
GROUP_COLUMNS = ("cell", "alpha", "resolution", "variant", "n", "seeds", "mult_adds", "params", "test_top1",
                 "test_top1_std", "test_top5", "test_top5_std", "train_seconds", "images_per_second", "latency_ms",
                 "latency_ms_std", "litert_ms", "litert_ms_std", "litert_int8_ms", "litert_int8_ms_std", "tflite_bytes",
                 "float32_top1", "int8_top1", "int8_top1_std", "int8_drop", "int8_drop_std", "int8_per_tensor_top1",
                 "int8_per_tensor_top1_std", "int8_per_tensor_drop", "int8_per_tensor_drop_std", "status",
                 "error")  # results.csv: one row per group of seeds
AVERAGED = ("test_top1", "test_top5", "train_seconds", "images_per_second", "latency_ms",
            *(c for c in EXPORT_COLUMNS if c != "tflite_bytes"), *(drop for drop, _ in DROPS))
WITH_STD = ("test_top1", "test_top5", "latency_ms", "litert_ms", "litert_int8_ms", "int8_top1", "int8_drop",
            "int8_per_tensor_top1", "int8_per_tensor_drop")
# Files a cell may hold besides metrics.jsonl: (path in the cell, the record's key holding the columns or None, the
# columns it gives); each a measurement made after training.
EXPORT_FILE = os.path.join("export", "export.json")
CELL_FILES = (("latency.json", None, ("latency_ms",)), (EXPORT_FILE, "summary", EXPORT_COLUMNS))
EXPORT_ERROR_FILE = "export_error.json"  # sweeps.exports: why the cell's last export failed
AXES = ("alpha", "resolution")  # the plain grid's axes; what a cell sets besides them (and seed) names its series
FAMILY_FIELDS = ("model.name", "model.minimalistic")  # the cell's family (its `model` column), not its series
DEFAULT_MODEL = "mobilenet_v1"  # the family of a config without model.name
IGNORED_FIELDS = ("seed", "wandb.name")  # differ between cells without making them different experiments


def read_json(path):
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def flat_get(config, dotted):
  """config["a"]["b"] for "a.b" in a config.json dict; None where a level is missing."""
  for key in dotted.split("."):
    config = (config or {}).get(key)
  return config


def flatten(config, prefix=""):
  for key, value in config.items():
    if isinstance(value, dict):
      yield from flatten(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def cells_of(workdir):
  """[(name, overrides)] in the sweep's order; overrides is None for a directory without sweep.json."""
  description = grid.read_description(workdir)
  if description is not None:
    return [(c["name"], c["overrides"]) for c in description["cells"]]
  names = sorted(n for n in os.listdir(workdir) if os.path.exists(os.path.join(workdir, n, "config.json")))
  return [(name, None) for name in names]


def model_of(config, final):
  """The cell's family as the report keys it: the final record's `model` (else config.model.name), with
  "_minimalistic" for V3's minimalistic variant."""
  model = final.get("model") or flat_get(config, "model.name") or DEFAULT_MODEL
  minimalistic = final.get("minimalistic", flat_get(config, "model.minimalistic"))
  return model + ("_minimalistic" if minimalistic else "")


def cell_row(workdir, name, overrides=None):
  """One results row: COLUMNS, plus the cell's config (config.json, {} before it starts), seed, `overrides`
  without seed, `key` (the same for the cells of one group of seeds) and `group` (the group's name). status is ok
  (final metrics), failed (error.json), incomplete (started) or pending."""
  cell_dir = os.path.join(workdir, name)
  config = read_json(os.path.join(cell_dir, "config.json")) or {}
  final = metrics.final_metrics(cell_dir) or {}
  error = read_json(os.path.join(cell_dir, "error.json"))
  row = {"cell": name, "alpha": config.get("alpha"), "resolution": config.get("resolution"),
         "variant": config.get("variant")}
  for column in COLUMNS[1:-2]:
    if final.get(column) is not None:
      row[column] = final[column]
  for filename, key, columns in CELL_FILES:
    record = read_json(os.path.join(cell_dir, filename)) or {}
    record = (record.get(key) or {}) if key else record
    row.update((column, record.get(column)) for column in columns)
  for drop, int8 in DROPS:
    if row.get("float32_top1") is not None and row.get(int8) is not None:
      row[drop] = row["float32_top1"] - row[int8]
  export_error = read_json(os.path.join(cell_dir, EXPORT_ERROR_FILE))
  if final:
    row["status"] = "ok"
    if export_error:
      row["error"] = f"export: {export_error['error']}"
  elif error:
    row["status"], row["error"] = "failed", error["error"]
  else:
    row["status"] = "incomplete" if os.path.exists(os.path.join(cell_dir, "metrics.jsonl")) else "pending"
  row = {column: row.get(column) for column in COLUMNS}
  if overrides is None:  # no sweep.json: a group of its own, its variant as what it sets
    overrides = {} if config.get("variant") in (None, "standard") else {"variant": config["variant"]}
    key, group = name, name
  else:
    key = json.dumps({k: v for k, v in overrides.items() if k != "seed"}, sort_keys=True, default=str)
    group = name.replace(f"_seed={grid.format_value(overrides['seed'])}", "") if "seed" in overrides else name
  return {**row, "model": model_of(config, final), "config": config, "seed": overrides.get("seed", config.get("seed")),
          "key": key, "group": group,
          "overrides": {k: v for k, v in overrides.items() if k != "seed"}}


def rows_of(workdir):
  """The cells' rows in the sweep's order, each with its `series` (series_names)."""
  if not os.path.isdir(workdir):
    raise ConfigError(f"workdir {workdir!r} does not exist")
  rows = [cell_row(workdir, name, overrides) for name, overrides in cells_of(workdir)]
  for row, series in zip(rows, series_names(rows)):
    row["series"] = series
  return rows


def reference_values(rows):
  """{field: value} for every field a cell sets besides the axes: the base config's value where some started cell
  leaves the field alone (its config.json holds it), else the value of the first cell that sets it (sweeps declare
  their baseline first)."""
  reference = {}
  for row in rows:
    for dotted, value in row["overrides"].items():
      reference.setdefault(dotted, value)
  for dotted in reference:
    base = [row["config"] for row in rows if dotted not in row["overrides"] and row["config"]]
    if base:
      reference[dotted] = flat_get(base[0], dotted)
  return reference


def series_names(rows):
  """Each row's series: what its cell sets besides the axes and its family (FAMILY_FIELDS, the `model` column) to
  a value other than the reference, as "field=value" joined by "_" in the order the sweep set them
  ("variant=full_conv", ...); "" for the plain grid. The same words as the tail of the cell's name
  (sweeps.grid.cell_name)."""
  reference = reference_values(rows)
  return ["_".join(f"{dotted}={grid.format_value(value)}" for dotted, value in row["overrides"].items()
                   if dotted not in AXES + FAMILY_FIELDS and value != reference[dotted]) for row in rows]


def models_of(rows):
  """The families of the rows, in the sweep's order."""
  return list(dict.fromkeys(row.get("model", DEFAULT_MODEL) for row in rows))


def varied_fields(rows):
  """The dotted config fields whose values differ between the started cells (seed and run names left out)."""
  values = {}
  for row in rows:
    for dotted, value in flatten(row["config"]):
      values.setdefault(dotted, set()).add(repr(value))
  return sorted(d for d, v in values.items() if len(v) > 1 and d not in IGNORED_FIELDS)


def dataset_of(rows):
  """The dataset of the sweep's first started cell (they all share it)."""
  return next((r["config"].get("data", {}).get("name") for r in rows if r["config"]), None)


def finished(rows):
  return [r for r in rows if r["status"] == "ok"]


def mean_std(values):
  mean = sum(values) / len(values)
  std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
  return mean, std


def groups_of(rows):
  """One record per group of cells that differ only by seed, in the sweep's order: GROUP_COLUMNS plus `series`
  and `config` (its first finished cell's); the numbers are the mean (and *_std the sample standard deviation)
  over the group's finished cells."""
  by_group = {}
  for row in rows:
    by_group.setdefault(row["key"], []).append(row)
  groups = []
  for cells in by_group.values():
    done = finished(cells)
    first = (done or cells)[0]
    group = {"cell": cells[0]["group"], "alpha": first["alpha"], "resolution": first["resolution"],
             "variant": first["variant"], "mult_adds": first["mult_adds"], "params": first["params"],
             "tflite_bytes": first.get("tflite_bytes"), "n": len(done),  # the same for every seed, like params
             "seeds": " ".join(str(r["seed"]) for r in done), "series": cells[0]["series"], "config": first["config"],
             "model": first.get("model", DEFAULT_MODEL)}  # rows made elsewhere may lack it
    for column in AVERAGED:
      values = [r[column] for r in done if r.get(column) is not None]  # rows made elsewhere may lack a column
      mean, std = mean_std(values) if values else (None, None)
      group[column] = mean
      if column in WITH_STD:
        group[f"{column}_std"] = std
    unfinished = [r for r in cells if r["status"] != "ok"]
    group["status"] = "ok" if not unfinished else (
        unfinished[0]["status"] + (f" ({len(done)} of {len(cells)} seeds ok)" if done else ""))
    group["error"] = next((r["error"] for r in unfinished + done if r["error"]), None)
    groups.append(group)
  return groups


def points(rows, x_key):
  """The groups with at least one finished cell and a value of x_key."""
  return [g for g in groups_of(rows) if g["n"] and g[x_key] is not None]


def write_csv(path, groups):
  """GROUP_COLUMNS, and a `model` column after `cell` where a group is not MobileNet V1."""
  columns = GROUP_COLUMNS
  if any(g["model"] != DEFAULT_MODEL for g in groups):
    columns = (columns[0], "model", *columns[1:])
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, columns, lineterminator="\n", extrasaction="ignore")
  writer.writeheader()
  writer.writerows({k: "" if v is None else v for k, v in group.items()} for group in groups)
  write_atomically(path, buffer.getvalue())
