"""Evaluates a workdir's latest checkpoint on its test split and appends a final line to its metrics.jsonl.

  python -m mnet_jax.evaluate --workdir DIR

DIR needs config.json and checkpoints/ (a training run, or converted pretrained weights).
"""

import json
import os

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from mnet_jax import checkpoint, data as data_lib, metrics as metrics_lib, process, train
from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.workdir import final_record, load_config, model_facts, model_from_config


def evaluate_workdir(workdir):
  """Evaluates the newest readable checkpoint of workdir; writes and returns the final metrics line."""
  workdir = os.path.abspath(workdir)
  config = load_config(workdir)
  config.model.kernels = "auto"  # config.json records the training's kernel set; evaluation uses this process's
  data = data_lib.build(config, eval_only=True)
  model = model_from_config(config, data.num_classes)
  mesh = train.make_mesh()
  replicated = NamedSharding(mesh, PartitionSpec())
  dummy = jnp.zeros((1, config.resolution, config.resolution, 3), jnp.float32)
  abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), dummy, train=False))
  abstract = checkpoint.with_sharding(abstract, replicated)
  restored = checkpoint.restore_variables(workdir, abstract)
  if restored is None:
    raise ConfigError(f"no readable checkpoint in {checkpoint.directory(workdir)!r}")
  step, variables = restored
  eval_step = jax.jit(lambda v, b: train.eval_step(v, data_lib.on_device(b, config.resolution), model=model,
                                                  num_classes=data.num_classes))
  batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
  evaluation = {"split": config.data.eval_split, **train.evaluate(eval_step, variables, data, batch_sharding)}
  if config.get("optim", {}).get("ema_decay"):
    ema = checkpoint.restore_variables(workdir, abstract, ema=True)
    if ema is not None and ema[0] == step:
      ema_evaluation = train.evaluate(eval_step, ema[1], data, batch_sharding)
      evaluation.update({f"ema_{k}": v for k, v in ema_evaluation.items() if k != "num_examples"})
  previous = metrics_lib.final_metrics(workdir) or {}
  record = final_record(step, evaluation, model_facts(config, data.num_classes), previous.get("train_seconds"),
                        previous.get("images_per_second"), previous.get("kernels"), previous.get("num_devices"),
                        previous.get("num_processes"))
  metrics_lib.Writer(workdir).write(record)
  return record


@exit_on_config_error
def main(argv=None):
  parser = OneLineArgumentParser(prog="python -m mnet_jax.evaluate", description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="a run directory with config.json and checkpoints/")
  args = parser.parse_args(argv)
  process.setup_process()
  record = evaluate_workdir(args.workdir)
  print(json.dumps({k: v for k, v in record.items()}, default=str))


if __name__ == "__main__":
  main()
