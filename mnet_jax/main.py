"""Command line: `python -m mnet_jax.main --config experiments/fashion_mnist.py:alpha=0.5 --workdir DIR`.

Further fields are overridden with `--config.section.field=value`. Multi-host: start the same command on
every host with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set (or on a cluster that
jax.distributed detects, e.g. SLURM) and `--multihost`.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, config.json and metrics.jsonl.", required=True)
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (one process per host).")
config_flags.DEFINE_config_file("config", None, "Experiment config file (experiments/*.py[:args]).", lock_config=True)


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}; use --config.field=value to override the config")
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  from mnet_jax import host_memory
  host_memory.keep_freed_memory()
  import jax
  if FLAGS.multihost:
    jax.distributed.initialize()
  from mnet_jax import data, train
  from mnet_jax.errors import ConfigError
  data.hide_gpus_from_tensorflow()
  try:
    final = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ConfigError, train.TrainingDiverged) as e:
    sys.exit(f"error: {e}")
  print(f"test top-1 {final['test_top1']:.4f} after {final['step']} steps; metrics in {FLAGS.workdir}/metrics.jsonl")


if __name__ == "__main__":
  app.run(main)
