"""Command line: `python -m mnet_jax.main --config mnet_jax/configs/fashion_mnist.py:alpha=0.5 --workdir DIR`.

Further fields are overridden with `--config.section.field=value`. Multi-host: start the same command with
`--multihost` on every host, with JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and
JAX_PROCESS_ID set, or on a cluster that jax.distributed detects (SLURM: one task per node); docs/multihost.md.
"""

import sys

from mnet_jax import config_file, process
from mnet_jax.errors import OneLineArgumentParser, exit_on_config_error


@exit_on_config_error
def main(argv=None):
  parser = OneLineArgumentParser(prog="python -m mnet_jax.main", description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True,
                      help="experiment config file, path.py[:arg], or a packaged config's name[:arg] (fashion_mnist)")
  parser.add_argument("--workdir", required=True, help="directory for checkpoints, config.json and metrics.jsonl")
  parser.add_argument("--multihost", action="store_true",
                      help="call jax.distributed.initialize() first (one process per host)")
  args, rest = parser.parse_known_args(argv)
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  process.setup_process(multihost=args.multihost)
  config = config_file.load(args.config, config_file.parse_overrides(rest))
  from mnet_jax import train
  try:
    final = train.train_and_evaluate(config, args.workdir)
  except train.TrainingDiverged as e:
    sys.exit(f"error: {e}")
  import jax
  if jax.process_index() == 0:
    print(f"test top-1 {final['test_top1']:.4f} after {final['step']} steps; metrics in {args.workdir}/metrics.jsonl")


if __name__ == "__main__":
  main()
