"""Batch-1 latency of a sweep's finished cells, measured one cell at a time with nothing else of the sweep running.

  python -m sweeps.report --workdir runs/demo --latency    # measure again, e.g. on a quiet machine

Each cell's latency.json holds the median wall time of many jitted batch-1 forward passes at the cell's
resolution, the number of runs, the device and, on a CPU, the threads XLA may use. The launcher measures the
cells that lack it after all of them have trained (local executors), so no training runs beside a measurement.
"""

import json
import os
import time

LATENCY_FILE = "latency.json"
MIN_RUNS = 200  # and at least MIN_SECONDS of runs: the median of a few hundred is stable to ~2 % on a quiet CPU
MIN_SECONDS = 1.0


def num_classes_of(config, final):
  """The classifier's width: the final record's `num_classes`; a record written before it had that key gives it
  through its parameter count (which grows by the classifier's input width per class), counted for the config's
  family through the registry."""
  if "num_classes" in final:
    return final["num_classes"]
  from mnet_jax import count, workdir
  one, two = [sum(c.params for c in count.count_layers(workdir.model_from_config(config, k).layers(),
                                                       config.resolution)) for k in (1, 2)]
  return 1 + (final["params"] - one) // (two - one)


def threads():
  """The threads XLA's CPU client runs a program on: one per CPU this process may use."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def measure(config, cell_dir):
  """Median wall time (ms) of one jitted batch-1 forward pass at the cell's resolution on this machine's first
  device; writes cell_dir/latency.json and returns its record.

  Timed with all-zero weights of the right shapes: dense arithmetic takes the same time whatever the values, and
  this needs neither the checkpoint nor a compiled init.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np
  from mnet_jax import metrics, workdir
  model = workdir.model_from_config(config, num_classes_of(config, metrics.final_metrics(cell_dir)))
  image = jnp.zeros((1, config.resolution, config.resolution, 3), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), image, train=False))
  variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  for _ in range(10):  # compile, then warm the caches
    forward(variables, image).block_until_ready()
  times, start = [], time.perf_counter()
  while len(times) < MIN_RUNS or time.perf_counter() - start < MIN_SECONDS:
    begin = time.perf_counter()
    forward(variables, image).block_until_ready()
    times.append(time.perf_counter() - begin)
  record = {"latency_ms": 1000 * float(np.median(times)), "runs": len(times), "batch_size": 1,
            "device": str(jax.devices()[0].device_kind), "backend": jax.default_backend()}
  if jax.default_backend() == "cpu":
    record["threads"] = threads()
  workdir.write_atomically(os.path.join(cell_dir, LATENCY_FILE), json.dumps(record, indent=2))
  return record


def measure_cells(workdir, cell_names, again=False, log=print):
  """Measures each finished cell of workdir that has no latency.json (every finished cell with again=True), one
  after another; returns how many it measured."""
  from mnet_jax import metrics, workdir as workdir_lib
  measured = 0
  for name in cell_names:
    cell_dir = os.path.join(workdir, name)
    if metrics.final_metrics(cell_dir) is None or (os.path.exists(os.path.join(cell_dir, LATENCY_FILE)) and not again):
      continue
    record = measure(workdir_lib.load_config(cell_dir), cell_dir)
    measured += 1
    log(f"latency {name}: {record['latency_ms']:.3f} ms (median of {record['runs']} batch-1 runs)")
  return measured
