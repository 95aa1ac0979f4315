"""Command line: `python -m mnet_jax.main --config experiments/fashion_mnist.py:alpha=0.5 --workdir DIR`.

Further fields are overridden with `--config.section.field=value`. Multi-host: start the same command with
`--multihost` on every host, with JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and
JAX_PROCESS_ID set, or on a cluster that jax.distributed detects (SLURM: one task per node); docs/multihost.md.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, config.json and metrics.jsonl.", required=True)
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (one process per host).")
config_flags.DEFINE_config_file("config", None, "Experiment config file (experiments/*.py[:args]).", lock_config=True)


def initialize_distributed():
  """jax.distributed.initialize() with the process count and index from JAX_NUM_PROCESSES and JAX_PROCESS_ID when
  set (jax reads only JAX_COORDINATOR_ADDRESS itself); otherwise jax detects them (SLURM, Open MPI, ...)."""
  import jax
  from mnet_jax.errors import ConfigError
  values = {}
  for name, key in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
    if os.environ.get(name):
      try:
        values[key] = int(os.environ[name])
      except ValueError:
        raise ConfigError(f"{name}={os.environ[name]!r} is not allowed: it must be an integer") from None
  try:
    jax.distributed.initialize(**values)
  except ValueError as e:
    raise ConfigError(f"--multihost: {e} (set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, or "
                      "run under SLURM)") from None


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}; use --config.field=value to override the config")
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  from mnet_jax import host_memory
  host_memory.keep_freed_memory()
  from mnet_jax.errors import ConfigError
  try:
    if FLAGS.multihost:
      initialize_distributed()
  except ConfigError as e:
    sys.exit(f"error: {e}")
  import jax
  from mnet_jax import data, train
  data.hide_gpus_from_tensorflow()
  try:
    final = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ConfigError, train.TrainingDiverged) as e:
    sys.exit(f"error: {e}")
  if jax.process_index() == 0:
    print(f"test top-1 {final['test_top1']:.4f} after {final['step']} steps; metrics in {FLAGS.workdir}/metrics.jsonl")


if __name__ == "__main__":
  app.run(main)
