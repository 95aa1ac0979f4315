"""A finished sweep's summary in wandb: its results table and figures as one more run of the sweep's wandb group
(offline unless configured). sweeps.launch logs it after the report."""

import hashlib
import os

from mnet_jax import metrics
from sweeps import results


def log(workdir, sweep_name, wandb_config):
  """Logs the cells' table and the report's Mult-Adds and params figures; returns the run's id, or None for an
  incomplete sweep or with wandb disabled."""
  import ml_collections
  workdir = os.path.abspath(workdir)
  rows = results.rows_of(workdir)
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
  columns = [c for c in results.COLUMNS if c != "error"]
  table = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])
  run.log({"results": table,
           "acc_vs_mult_adds": wandb.plot.scatter(table, "mult_adds", "test_top1", title="test top-1 vs Mult-Adds"),
           "acc_vs_mult_adds_plot": wandb.Image(os.path.join(workdir, "acc_vs_mult_adds.png")),
           "acc_vs_params_plot": wandb.Image(os.path.join(workdir, "acc_vs_params.png"))})
  run.finish()
  return run_id
