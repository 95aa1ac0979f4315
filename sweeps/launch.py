r"""Trains every cell of a sweep, skipping finished cells and resuming interrupted ones, then writes the report.

  python -m sweeps.launch --config experiments/grid16.py[:data=imagenet] --workdir runs/grid16 \
      [--executor local|slurm|submitit-local] [--cell K] [--list] [--seeds N] [--export [--export-weights W] ...]
      [--config.field=value ...]

Executors:
- `local` (default): the cells one after another in this process; with several local GPUs (or `--parallel N`),
  N cells at a time, each in its own `--cell K` process pinned to one GPU. `--cells-per-device K`: K cell processes
  per GPU at a time (each without preallocation, with a 1/K share of its memory), or on a CPU-only machine K at a
  time, each on its own 1/K of the cores (docs/multihost.md).
- `--cell K`: only cell K (for array schedulers: SLURM arrays, Kubernetes Indexed Jobs); `--list` prints the cells.
- `slurm`: one SLURM job array through submitit, one task per unfinished cell; `--executor-param KEY=VALUE`
  goes to submitit's `update_parameters` (slurm_partition=gpu, gpus_per_node=1, timeout_min=1440, ...).
  `submitit-local` is the same path with submitit's local executor (real processes on this machine).

`--seeds N` trains every cell N times, with seeds config.seed, config.seed + 1, ... (cells `<name>_seed=S`, all
first seeds before any second one); the report groups them. Batch-1 latency (sweeps/latency.py) is measured after
the cells have trained, one cell at a time (local executors), or by each array task after its cell; so is the
LiteRT export of every cell with `--export` or when the sweep file declares `EXPORT` (sweeps/exports.py).

A cell is finished when its metrics.jsonl has a `"final": true` line. A failing cell leaves its error in
`<cell>/error.json`, the other cells go on, and the exit status is 1. The report (results.csv, plots,
report.md) is rebuilt at the end, or at any time with `python -m sweeps.report --workdir DIR`.
"""

import json
import os
import subprocess
import sys
import time
import traceback

from mnet_jax import config_file, process
from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.workdir import write_atomically
from sweeps import exports, grid

EXECUTORS = ("local", "slurm", "submitit-local")
ERROR_FILE = "error.json"
GPU_MEMORY_SHARE = 0.9  # of each GPU, split between its cells; the rest is for the K CUDA contexts themselves


def is_finished(cell_dir):
  from mnet_jax import metrics
  return metrics.final_metrics(cell_dir) is not None


def needs_work(workdir, cell, export_kwargs=None):
  """Not finished, or finished without a latency measurement or, with export_kwargs, an export with them (for
  executors whose cells measure and export their own)."""
  from mnet_jax import export
  from sweeps import latency
  cell_dir = os.path.join(workdir, cell.name)
  return (not is_finished(cell_dir) or not os.path.exists(os.path.join(cell_dir, latency.LATENCY_FILE)) or
          (export_kwargs is not None and not export.is_exported(cell_dir, export.export_options(**export_kwargs))))


def check_writable(workdir):
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"workdir {workdir!r} is not writable ({e.strerror or e})") from None


def write_json(path, record):
  write_atomically(path, json.dumps(record, indent=2))


def run_cell(spec, command_line, workdir, index, seeds=1, measure_latency=True, export_kwargs=None):
  """Trains cell `index` (idempotent), then measures its latency if that is missing and `measure_latency`, then
  exports it with export_kwargs (sweeps.exports.options) unless that is None or it is exported already.

  Returns {"index", "name", "status": "trained"|"skipped"|"failed", "seconds", "test_top1", "error"}; errors
  in the cell are recorded in <cell>/error.json, not raised. Top-level so submitit can pickle it.
  """
  sweep = grid.load(spec, command_line, seeds)
  cell = sweep.check_index(index)
  cell_dir = os.path.join(workdir, cell.name)
  os.makedirs(cell_dir, exist_ok=True)
  error_path = os.path.join(cell_dir, ERROR_FILE)
  result = {"index": index, "name": cell.name, "status": "skipped", "seconds": 0.0, "test_top1": None, "error": None}
  start = time.time()
  process.setup_process()  # a no-op in the launcher's own process, which has called it already
  try:
    if not is_finished(cell_dir):
      from mnet_jax import train
      train.train_and_evaluate(cell.config, cell_dir)
      result["status"] = "trained"
    from sweeps import latency
    if measure_latency and not os.path.exists(os.path.join(cell_dir, latency.LATENCY_FILE)):
      latency.measure(cell.config, cell_dir)
    from mnet_jax import metrics
    result["test_top1"] = metrics.final_metrics(cell_dir)["test_top1"]
    if os.path.exists(error_path):
      os.remove(error_path)
    if export_kwargs is not None:
      from sweeps import exports
      for _, message in exports.export_cells(workdir, [cell.name], export_kwargs):
        result.update(status="failed", error=f"export: {message}")  # kept in <cell>/export_error.json
  except Exception as e:  # a failing cell must not stop the others; its error is kept beside it
    message = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    write_json(error_path, {"error": message, "traceback": traceback.format_exc(), "time": time.time()})
    result.update(status="failed", error=message)
  result["seconds"] = time.time() - start
  return result


def format_seconds(seconds):
  seconds = int(round(seconds))
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
  """Prints cells done / total, the current cell and an ETA (mean time of the cells trained so far)."""

  def __init__(self, sweep):
    self.sweep, self.total = sweep, len(sweep.cells)
    self.done, self.failed, self.trained_seconds, self.trained = 0, 0, 0.0, 0

  def eta(self, running=0):
    if not self.trained:
      return "ETA after the first cell"
    left = self.total - self.done - self.failed
    return f"ETA {format_seconds(self.trained_seconds / self.trained * max(left - running, 0))}"

  def start(self, cell, running=1):
    print(f"[{self.sweep.name}] {self.done + self.failed}/{self.total} done ({self.failed} failed); "
          f"cell {cell.index} {cell.name}; {self.eta(running)}", flush=True)

  def finish(self, result):
    if result["status"] == "failed":
      self.failed += 1
      print(f"[{self.sweep.name}] cell {result['index']} {result['name']} FAILED: {result['error']}", flush=True)
      return
    self.done += 1
    if result["status"] == "trained":
      self.trained += 1
      self.trained_seconds += result["seconds"]
    top1 = f"test top-1 {result['test_top1']:.4f}" if result["test_top1"] is not None else ""
    print(f"[{self.sweep.name}] cell {result['index']} {result['name']} {result['status']} in "
          f"{format_seconds(result['seconds'])}: {top1}", flush=True)


def run_sequential(sweep, workdir):
  progress = Progress(sweep)
  results = []
  for cell in sweep.cells:
    if is_finished(os.path.join(workdir, cell.name)):
      results.append({"index": cell.index, "name": cell.name, "status": "skipped"})
      progress.done += 1
      continue
    progress.start(cell)
    result = run_cell(sweep.spec, sweep.command_line, workdir, cell.index, sweep.seeds, measure_latency=False)
    progress.finish(result)
    results.append(result)
  return results


def cell_command(sweep, workdir, index):
  command = [sys.executable, "-m", "sweeps.launch", "--config", sweep.spec, "--workdir", workdir,
             "--cell", str(index), "--seeds", str(sweep.seeds), "--no-report", "--no-latency", "--no-export"]
  return command + [f"--config.{dotted}={text}" for dotted, text in sweep.command_line]


def local_gpus():
  """How many GPUs this machine has, without initialising JAX here (it would take their memory)."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None:
    return [d for d in visible.split(",") if d.strip()]
  try:
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def slot_environment(slot, gpus, cells_per_device):
  """The environment variables of parallel slot `slot`'s process: its GPU and, with several cells per GPU, no
  preallocation and a 1/K share of the GPU's memory; nothing on a CPU-only machine."""
  if not gpus:
    return {}
  env = {"CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]}
  if cells_per_device > 1:
    env.update(XLA_PYTHON_CLIENT_PREALLOCATE="false",
               XLA_PYTHON_CLIENT_MEM_FRACTION=f"{GPU_MEMORY_SHARE / cells_per_device:.3f}")
  return env


def slot_cores(slot, slots):
  """The CPU cores of slot `slot` of `slots`: an equal share of this process's cores, or None when there are fewer
  cores than slots."""
  cores = sorted(os.sched_getaffinity(0))
  share = len(cores) // slots
  return set(cores[slot * share:(slot + 1) * share]) if share else None


def run_parallel(sweep, workdir, slots, gpus, cells_per_device=1):
  """`slots` cells at a time, each a `--cell K` process (pinned to one GPU when there are GPUs; with
  cells_per_device > 1 on a CPU-only machine, to its share of the cores)."""
  progress = Progress(sweep)
  pending = [c for c in sweep.cells if not is_finished(os.path.join(workdir, c.name))]
  progress.done = len(sweep.cells) - len(pending)
  running, results = {}, []
  free = list(range(slots))
  while pending or running:
    while pending and free:
      cell, slot = pending.pop(0), free.pop(0)
      env = {**os.environ, **slot_environment(slot, gpus, cells_per_device)}
      cores = slot_cores(slot, slots) if cells_per_device > 1 and not gpus else None
      progress.start(cell, running=len(running) + 1)
      os.makedirs(os.path.join(workdir, cell.name), exist_ok=True)
      log = open(os.path.join(workdir, cell.name, "launch.log"), "a")
      process = subprocess.Popen(cell_command(sweep, workdir, cell.index), env=env, stdout=log,
                                 stderr=subprocess.STDOUT,
                                 preexec_fn=None if cores is None else lambda: os.sched_setaffinity(0, cores))
      running[process] = (cell, slot, time.time(), log)
    time.sleep(0.5)
    for process in [p for p in running if p.poll() is not None]:
      cell, slot, start, log = running.pop(process)
      log.close()
      free.append(slot)
      result = {"index": cell.index, "name": cell.name, "seconds": time.time() - start, "status": "trained",
                "test_top1": None, "error": None}
      if process.returncode != 0 or not is_finished(os.path.join(workdir, cell.name)):
        result.update(status="failed", error=cell_error(workdir, cell, process.returncode))
      else:
        from mnet_jax import metrics
        result["test_top1"] = metrics.final_metrics(os.path.join(workdir, cell.name))["test_top1"]
      progress.finish(result)
      results.append(result)
  return results


def cell_error(workdir, cell, returncode):
  path = os.path.join(workdir, cell.name, ERROR_FILE)
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)["error"]
  return f"the cell's process exited with status {returncode}; see {os.path.join(workdir, cell.name, 'launch.log')}"


def parse_executor_params(items):
  import ast
  params = {}
  for item in items:
    key, has_value, text = item.partition("=")
    if not has_value or not key:
      raise ConfigError(f"--executor-param {item!r} is not KEY=VALUE (e.g. slurm_partition=gpu)")
    try:
      params[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      params[key] = text
  return params


def run_submitit(sweep, workdir, cluster, params, export_kwargs=None):
  """One job array (submitit map_array) over the unfinished cells; waits for it, printing progress."""
  import submitit
  pending = [c for c in sweep.cells if needs_work(workdir, c, export_kwargs)]
  progress = Progress(sweep)
  progress.done = len(sweep.cells) - len(pending)
  if not pending:
    return []
  executor = submitit.AutoExecutor(folder=os.path.join(workdir, "submitit", "%j"), cluster=cluster)
  executor.update_parameters(name=sweep.name, timeout_min=24 * 60)
  try:
    executor.update_parameters(**params)
  except (ValueError, TypeError) as e:
    raise ConfigError(f"--executor-param: {e}") from None
  indices = [c.index for c in pending]
  count = len(indices)
  jobs = executor.map_array(run_cell, [sweep.spec] * count, [sweep.command_line] * count, [workdir] * count, indices,
                            [sweep.seeds] * count, [True] * count, [export_kwargs] * count)
  print(f"[{sweep.name}] submitted {count} cells as {cluster} job array {jobs[0].job_id.split('_')[0]}; "
        f"logs in {os.path.join(workdir, 'submitit')}", flush=True)
  results = []
  for cell, job in zip(pending, jobs):
    try:
      result = job.result()
    except Exception as e:  # the job itself died (preempted, killed, out of memory)
      result = {"index": cell.index, "name": cell.name, "status": "failed", "seconds": 0.0, "test_top1": None,
                "error": f"job {job.job_id}: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e) else ''}"}
    progress.finish(result)
    results.append(result)
  return results


def finish(sweep, workdir, results, write_report, export_failures=()):
  failed = [r for r in results if r["status"] == "failed"]
  if write_report:
    from sweeps import report, wandb_summary
    paths = report.write(workdir)
    logged = os.path.join(workdir, "wandb_summary.json")
    if any(r["status"] == "trained" for r in results) or not os.path.exists(logged):
      run_id = wandb_summary.log(workdir, sweep.name, sweep.cells[0].config.wandb)
      if run_id is not None:
        write_json(logged, {"run_id": run_id, "time": time.time()})
    print(f"[{sweep.name}] report: {paths['report']}\n[{sweep.name}] results: {paths['results']}\n"
          f"[{sweep.name}] plots: {', '.join(paths['plots'])}", flush=True)
  if failed:
    print(f"[{sweep.name}] {len(failed)} of {len(sweep.cells)} cells failed: "
          f"{', '.join(r['name'] for r in failed)} (errors in <cell>/{ERROR_FILE})", flush=True)
  if export_failures:
    from sweeps import exports
    print(f"[{sweep.name}] the export of {len(export_failures)} cells failed: "
          f"{', '.join(name for name, _ in export_failures)} (errors in <cell>/{exports.ERROR_FILE})", flush=True)
  return 1 if failed or export_failures else 0


def parse_args(argv):
  parser = OneLineArgumentParser(prog="python -m sweeps.launch", description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="a sweep config, path.py[:arg] (experiments/grid16.py, ...)")
  parser.add_argument("--workdir", help="the sweep's directory: one subdirectory per cell, results, plots")
  parser.add_argument("--executor", default="local", choices=EXECUTORS)
  parser.add_argument("--cell", type=int, help="run only cell K (0-based; --list prints them)")
  parser.add_argument("--list", action="store_true", help="print the cells with their index and exit")
  parser.add_argument("--parallel", type=int, help="local executor: cells at a time (default: 1, or the number of "
                      "GPUs when there are several)")
  parser.add_argument("--cells-per-device", type=int, help="local executor: cell processes per GPU at a time (on "
                      "a CPU-only machine: at a time, each on 1/K of the cores)")
  parser.add_argument("--executor-param", action="append", default=[], metavar="KEY=VALUE",
                      help="slurm/submitit-local: a submitit parameter (repeatable)")
  parser.add_argument("--seeds", type=int, default=1, help="train every cell with seeds seed, seed+1, ... "
                      "(config.seed and N-1 more; the report shows their mean and standard deviation)")
  parser.add_argument("--no-report", action="store_true", help="do not rebuild the report at the end")
  parser.add_argument("--no-latency", action="store_true", help="--cell K: do not measure the cell's latency")
  parser.add_argument("--no-export", action="store_true", help="--cell K: do not export the cell")
  exports.add_arguments(parser)
  args, rest = parser.parse_known_args(argv)
  try:
    return args, config_file.parse_overrides(rest)
  except ConfigError as e:
    parser.error(str(e))


@exit_on_config_error
def main(argv=None):
  args, command_line = parse_args(argv)
  process.setup_process()
  sweep = grid.load(args.config, command_line, args.seeds)
  if args.list:
    for cell in sweep.cells:
      print(f"{cell.index:>3}  {cell.name}  {json.dumps(cell.overrides)}")
    return 0
  if args.cell is not None:
    sweep.check_index(args.cell)
  if not args.workdir:
    raise ConfigError("--workdir is required (except with --list)")
  if args.parallel is not None and args.parallel < 1:
    raise ConfigError(f"--parallel {args.parallel} is not allowed: it must be >= 1")
  if args.cells_per_device is not None:
    if args.cells_per_device < 1:
      raise ConfigError(f"--cells-per-device {args.cells_per_device} is not allowed: it must be >= 1")
    if args.parallel is not None or args.executor != "local" or args.cell is not None:
      raise ConfigError("--cells-per-device goes with the local executor alone; not with --parallel, --cell or "
                        "--executor slurm/submitit-local")
  export_kwargs = None if args.no_export else exports.options(args, exports.declared(args.config), by_default=True)
  workdir = os.path.abspath(args.workdir)
  check_writable(workdir)
  grid.write_description(workdir, sweep)
  print(f"[{sweep.name}] {len(sweep.cells)} cells in {workdir}", flush=True)
  if args.cell is not None:
    progress = Progress(sweep)
    progress.start(sweep.cells[args.cell])
    result = run_cell(sweep.spec, sweep.command_line, workdir, args.cell, sweep.seeds, not args.no_latency,
                      export_kwargs)
    progress.finish(result)
    return finish(sweep, workdir, [result], write_report=not args.no_report)
  if args.executor == "local":
    gpus = local_gpus()
    cells_per_device = args.cells_per_device or 1
    slots = args.parallel or max(len(gpus), 1) * cells_per_device
    if slots > 1:
      results = run_parallel(sweep, workdir, slots, gpus[:slots], cells_per_device)
    else:
      results = run_sequential(sweep, workdir)
    from sweeps import latency  # after the cells: no training runs beside a measurement
    log = lambda line: print(f"[{sweep.name}] {line}", flush=True)  # noqa: E731
    latency.measure_cells(workdir, [c.name for c in sweep.cells], log=log)
    export_failures = [] if export_kwargs is None else exports.export_cells(
        workdir, [c.name for c in sweep.cells], export_kwargs, log=log)  # one at a time, after the latencies
    return finish(sweep, workdir, results, not args.no_report, export_failures)
  cluster = "slurm" if args.executor == "slurm" else "local"
  results = run_submitit(sweep, workdir, cluster, parse_executor_params(args.executor_param), export_kwargs)
  return finish(sweep, workdir, results, write_report=not args.no_report)


if __name__ == "__main__":
  try:
    sys.exit(main())
  except KeyboardInterrupt:
    sys.exit("interrupted; run the same command again to resume (finished cells are skipped)")
