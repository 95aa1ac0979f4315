"""Where metrics go: workdir/metrics.jsonl (the source of truth), wandb, and a progress bar.

Only process 0 writes. wandb runs offline by default (a run directory under workdir/wandb that
`wandb sync` uploads later) and never needs the network: mode 'auto' goes online only when an API key is
configured, and an online start that fails falls back to offline.
"""

import contextlib
import hashlib
import io
import json
import math
import os
import sys
import warnings

import jax

from mnet_jax.workdir import write_atomically

WANDB_MODES = ("offline", "online", "auto", "disabled")


def metrics_path(workdir):
  return os.path.join(workdir, "metrics.jsonl")


def read_metrics(workdir):
  path = metrics_path(workdir)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def final_metrics(workdir):
  """The final evaluation line of a finished run, or None."""
  finals = [m for m in read_metrics(workdir) if m.get("final")]
  return finals[-1] if finals else None


def truncate_after(workdir, step):
  """Drops lines logged after `step` (written by an attempt that died before its next checkpoint)."""
  if jax.process_index() != 0:
    return
  kept = [m for m in read_metrics(workdir) if m.get("step", 0) <= step and not m.get("final")]
  write_atomically(metrics_path(workdir), "".join(json.dumps(m) + "\n" for m in kept))


def jsonable(value):
  value = value.item() if hasattr(value, "item") else value
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class Writer:
  """Appends one JSON object per call to metrics.jsonl and mirrors it to wandb."""

  def __init__(self, workdir, wandb_run=None):
    self.path = metrics_path(workdir)
    self.wandb_run = wandb_run
    self.active = jax.process_index() == 0

  def write(self, record):
    if not self.active:
      return
    record = {k: jsonable(v) for k, v in record.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self.wandb_run is not None:
      step = record.get("step", 0)
      prefix = "" if "split" not in record else f"{record['split']}/"
      self.wandb_run.log({prefix + k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"},
                         step=step)
      if record.get("final"):
        self.wandb_run.summary.update(record)

  def close(self):
    if self.wandb_run is not None:
      self.wandb_run.finish()
      self.wandb_run = None


def run_id(config_json, workdir):
  """A wandb run id from the config and the workdir: the same command gives the same run."""
  return hashlib.sha256((config_json + "\n" + os.path.abspath(workdir)).encode()).hexdigest()[:16]


def has_wandb_key():
  """Whether wandb finds credentials (WANDB_API_KEY, its settings, .netrc), without asking, writing or going online.
  `wandb.login(prompt=False, verify=False)` finds them the same way but then asks the server for the user name it
  prints, which offline retries for seconds and can leave the process waiting on wandb's service at exit; its silent
  form skips that message."""
  try:
    from wandb.sdk import wandb_login
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
      logged_in, _ = wandb_login._login(prompt=False, verify=False, update_api_key=False, _silent=True)
    return bool(logged_in)
  except Exception:
    return False


def check_wandb_mode(mode):
  if mode not in WANDB_MODES:
    from mnet_jax.errors import ConfigError
    raise ConfigError(f"wandb.mode={mode!r} is unknown; allowed: {', '.join(WANDB_MODES)}")


def start_wandb(wandb_config, config_dict, workdir, wandb_run_id):
  """A wandb run (resumed when `wandb_run_id` already exists), or None when disabled or on process > 0."""
  mode = wandb_config.mode
  check_wandb_mode(mode)
  if mode == "disabled" or jax.process_index() != 0:
    return None
  if mode == "auto":
    mode = "online" if has_wandb_key() else "offline"
  import wandb
  kwargs = dict(dir=workdir, id=wandb_run_id, resume="allow", project=wandb_config.project, group=wandb_config.group,
                name=wandb_config.name or os.path.basename(os.path.abspath(workdir)), config=config_dict,
                settings=wandb.Settings(init_timeout=60, x_disable_stats=True, console="off", silent=True))
  try:
    return wandb.init(mode=mode, **kwargs)
  except Exception as e:
    if mode != "online":
      raise
    warnings.warn(f"wandb could not start online ({type(e).__name__}); logging offline instead")
    return wandb.init(mode="offline", **kwargs)


def progress_bar(total, initial):
  """A tqdm bar on a terminal; None otherwise."""
  if jax.process_index() != 0 or not sys.stderr.isatty():
    return None
  from tqdm import tqdm
  return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
