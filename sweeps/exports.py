"""A sweep's finished cells exported to LiteRT (mnet_jax.export), one cell at a time, and the options they use.

  python -m sweeps.launch --config FILE --workdir DIR --export [--export-weights per-channel,per-tensor]
  python -m sweeps.report --workdir DIR --export            # a sweep already trained

Every export writes the float32 model and an int8 model per weight-scale setting (`--export-weights`: per-channel,
the default; per-tensor; or both, a model each). The options are mnet_jax.export's defaults, then the sweep file's
`EXPORT` dict (experiments/quant.py sets its weights there, and the launcher exports such a sweep without
--export), then the `--export-*` flags. A cell whose export.json holds the same options is skipped; exports run
after every cell has trained, one after another, since their latency needs a quiet machine.
"""

import json
import os
import time

from mnet_jax import export
from mnet_jax.errors import ConfigError
from mnet_jax.workdir import write_atomically
from sweeps import grid, results

ERROR_FILE = results.EXPORT_ERROR_FILE  # in the cell's directory: why its last export failed
# EXPORT's keys and the flags that override them: (key, flag, type, help)
FLAGS = (("weights", "--export-weights", str, "int8 weight scales: per-channel (default), per-tensor, or "
          "per-channel,per-tensor (an int8 model each)"),
         ("calibration_images", "--export-calibration-images", int,
          f"training images the int8 ranges are calibrated on (default {export.DEFAULT_CALIBRATION_IMAGES})"),
         ("threads", "--export-threads", str, "LiteRT thread counts to time, e.g. 1,2 (default: 1 and every core)"),
         ("min_runs", "--export-min-runs", int, "latency: at least this many batch-1 invocations (default 200)"),
         ("min_seconds", "--export-min-seconds", float, "latency: and at least this many seconds (default 1)"))


def add_arguments(parser):
  parser.add_argument("--export", action="store_true", help="export every finished cell to LiteRT (float32 and "
                      "int8), one at a time after training; an exported cell is skipped")
  for _, flag, kind, text in FLAGS:
    parser.add_argument(flag, type=kind, help=text)


def declared(spec):
  """The sweep file's EXPORT dict ({} where it has none)."""
  module = grid.load_module(spec.partition(":")[0])
  options = getattr(module, "EXPORT", None) or {}
  keys = [key for key, _, _, _ in FLAGS]
  unknown = sorted(set(options) - set(keys))
  if not isinstance(options, dict) or unknown:
    raise ConfigError(f"{spec}: EXPORT keys {unknown} are unknown; allowed: {', '.join(keys)}")
  return dict(options)


def options(args, sweep_options=None, by_default=False):
  """export_workdir's keyword arguments for the command line `args` over the sweep's EXPORT (`sweep_options`), or
  None when there is nothing to export: no --export and, unless `by_default`, no EXPORT. Bad values are
  ConfigErrors before anything trains."""
  sweep_options = sweep_options or {}
  given = {key: getattr(args, flag[2:].replace("-", "_")) for key, flag, _, _ in FLAGS}
  if not (args.export or (by_default and sweep_options)):
    flags = [flag for key, flag, _, _ in FLAGS if given[key] is not None]
    if flags:
      raise ConfigError(f"{flags[0]} goes with --export (or a sweep file that declares EXPORT)")
    return None
  chosen = {**sweep_options, **{key: value for key, value in given.items() if value is not None}}
  threads = chosen.get("threads")
  kwargs = {"int8": True, "weights": chosen.get("weights", "per-channel"),
            "calibration_images_count": chosen.get("calibration_images", export.DEFAULT_CALIBRATION_IMAGES),
            "threads": export.parse_threads(threads) if isinstance(threads, str) else threads,
            "min_runs": chosen.get("min_runs", export.MIN_RUNS),
            "min_seconds": chosen.get("min_seconds", export.MIN_SECONDS)}
  export.export_options(**kwargs)  # checks the values
  return kwargs


def export_cells(workdir, cell_names, kwargs, log=print):
  """Exports each finished cell of workdir not yet exported with these options, one after another; returns
  [(cell, error message)] of those that failed (each also in <cell>/export_error.json)."""
  from mnet_jax import metrics
  wanted = export.export_options(**kwargs)
  failures = []
  for name in cell_names:
    cell_dir = os.path.join(workdir, name)
    if metrics.final_metrics(cell_dir) is None or export.is_exported(cell_dir, wanted):
      continue
    start, error_path = time.time(), os.path.join(cell_dir, ERROR_FILE)
    try:
      record = export.export_workdir(cell_dir, log=lambda line: None, **kwargs)
    except Exception as e:  # a failing export must not stop the others; its error is kept beside the cell
      message = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
      write_atomically(error_path, json.dumps({"error": message, "time": time.time()}, indent=2))
      failures.append((name, message))
      log(f"export {name} FAILED: {message}")
      continue
    if os.path.exists(error_path):
      os.remove(error_path)
    log(f"export {name}: {describe(record)} in {time.time() - start:.0f} s")
  return failures


def describe(record):
  """One line of an export's figures: LiteRT latencies at 1 thread, top-1 of the models, the float model's size."""
  summary, parts = record["summary"], []
  for key, what in (("litert_ms", "float32"), ("litert_int8_ms", "int8"),
                    ("litert_int8_per_tensor_ms", "int8 per-tensor")):
    if summary.get(key) is not None:
      parts.append(f"{what} {summary[key]:.3f} ms")
  for key, what in (("float32_top1", "float32"), ("int8_top1", "int8"), ("int8_per_tensor_top1", "int8 per-tensor")):
    if summary.get(key) is not None:
      parts.append(f"{what} top-1 {100 * summary[key]:.2f} %")
  failed = [k for k, v in record["checks"].items() if k.endswith("_within_tolerance") and not v]
  return ", ".join(parts + [f"{summary['tflite_bytes']} bytes"] + [f"the float model FAILS {k}" for k in failed])
