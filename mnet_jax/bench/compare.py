"""This project's model against the same architecture in PyTorch, in the same run: training and inference img/s
of each setting, the two frameworks timed in turns, and the input pipelines alone beside the step."""

import contextlib
import datetime
import json
import multiprocessing

import jax
import numpy as np

from mnet_jax import machine
from mnet_jax.bench import input_modes, jax_runner, torch_peer
from mnet_jax.bench.timing import timed
from mnet_jax.errors import ConfigError
from mnet_jax.models.mobilenet_v1 import check_alpha, check_resolution
from mnet_jax.models.network import DTYPES

CPU_SETTINGS = ((1.0, 32, 128, "float32"), (0.5, 32, 128, "float32"), (0.25, 32, 128, "float32"),
                (1.0, 224, 16, "float32"))
GPU_SETTINGS = ((1.0, 224, 256, "bfloat16"),)
PEERS = ("twin", "timm", "none")  # twin: torch_peer.torch_model; timm: torch_peer.TIMM_MODEL; none: JAX only
ONE_CALL_PIXELS = 224 * 224 * 16  # a batch this large takes ~1 s a step on 2 cores: one call a timing, else 3
PIPELINE_IMAGES = 2000  # images a pipeline timing draws at <= SMALL_RESOLUTION px (at least 4 batches)
SMALL_RESOLUTION = 64  # above it, 4 batches (a JPEG pipeline at 224 px is slow)
COLUMNS = (("jax_train_img_s", 16, 1), ("torch_train_img_s", 8, 1), ("train_ratio", 6, 2),
           ("jax_infer_img_s", 16, 1), ("torch_infer_img_s", 8, 1), ("infer_ratio", 6, 2))


def parse_setting(text):
  """'alpha,resolution,batch,dtype' -> a checked tuple."""
  parts = text.split(",")
  if len(parts) != 4:
    raise ConfigError(
        f"--setting {text!r} is not allowed: expected alpha,resolution,batch,dtype e.g. 1.0,32,128,float32")
  try:
    alpha, resolution, batch = float(parts[0]), int(parts[1]), int(parts[2])
  except ValueError:
    raise ConfigError(
        f"--setting {text!r} is not allowed: alpha must be a number, resolution and batch integers") from None
  check_alpha(alpha)
  check_resolution(resolution)
  if batch < 1:
    raise ConfigError(f"--setting {text!r} is not allowed: batch must be >= 1")
  if parts[3] not in DTYPES:
    raise ConfigError(f"--setting {text!r} is not allowed: dtype must be one of {', '.join(DTYPES)}")
  return alpha, resolution, batch, parts[3]


def calls_per_timing(resolution, batch):
  return 1 if resolution * resolution * batch >= ONE_CALL_PIXELS else 3


def rounded(value, digits):
  return None if value is None else round(value, digits)


def rates_in_turns(jax_run, peer, kind, images_per_call, calls, repeats):
  """Median images/s of jax_run and of the peer's `kind` run over `repeats` timings each, taken in turns (jax,
  torch, jax, ...), so that a slow spell of the machine falls on both; the peer's is None without a peer."""
  jax_seconds, torch_seconds = [], []
  for _ in range(repeats):
    jax_seconds.append(timed(jax_run, calls).seconds)
    if peer is not None:
      torch_seconds.append(peer.apply(torch_peer.seconds, (kind, calls)))
  rate = lambda seconds: images_per_call * calls / float(np.median(seconds)) if seconds else None  # noqa: E731
  return rate(jax_seconds), rate(torch_seconds)


def measure(model, setting, device, peer, peer_options, repeats):
  """The row of one setting (alpha, resolution, batch, dtype) for `model` (bench.model.Model)."""
  alpha, resolution, batch, dtype = setting
  calls = calls_per_timing(resolution, batch)
  jax_train_run, jax_infer_run = jax_runner.jax_runs(model, resolution, batch, device)
  if peer is not None:
    peer.apply(torch_peer.setup, (model.layers, model.twin_options(), resolution, batch, dtype, device.platform,
                                  *peer_options, jax_runner.LEARNING_RATE, jax_runner.MOMENTUM))
  jax_train, torch_train = rates_in_turns(jax_train_run, peer, "train", batch, calls, repeats)
  jax_infer, torch_infer = rates_in_turns(jax_infer_run, peer, "infer", batch, calls, repeats)
  return {"alpha": alpha, "resolution": resolution, "batch": batch, "dtype": dtype,
          "jax_train_img_s": rounded(jax_train, 1), "torch_train_img_s": rounded(torch_train, 1),
          "train_ratio": rounded(torch_train and jax_train / torch_train, 3),
          "jax_infer_img_s": rounded(jax_infer, 1), "torch_infer_img_s": rounded(torch_infer, 1),
          "infer_ratio": rounded(torch_infer and jax_infer / torch_infer, 3)}


def print_row(row, as_json):
  if as_json:
    print(json.dumps(row), flush=True)
    return
  cells = [f"{row[k]:{width}.{digits}f}" if row[k] is not None else f"{'-':>{width}}" for k, width, digits in COLUMNS]
  print(f"{row['alpha']:5.2f} {row['resolution']:4d} {row['batch']:5d} {row['dtype']:>8} | {' '.join(cells[:3])} | "
        f"{' '.join(cells[3:])}", flush=True)


def pipelines_beside(rows, header, as_json):
  """Each input pipeline alone at each (resolution, batch) of `rows`, over the JAX training step's img/s."""
  for name, rate_fn in input_modes.BESIDE_THE_STEP.items():
    seen = set()
    for row in rows:
      resolution, batch = row["resolution"], row["batch"]
      if (resolution, batch) in seen:
        continue
      seen.add((resolution, batch))
      num_batches = max(4, PIPELINE_IMAGES // batch) if resolution <= SMALL_RESOLUTION else 4
      rate = rate_fn(resolution, batch, num_batches)
      line = {"pipeline": name, "resolution": resolution, "batch": batch, "pipeline_img_s": round(rate, 1),
              "jax_train_img_s": row["jax_train_img_s"],
              "pipeline_over_step": round(rate / row["jax_train_img_s"], 2), **header}
      if as_json:
        print(json.dumps(line), flush=True)
      else:
        print(f"input pipeline {name} at {resolution} px, batch {batch}: {rate:.0f} img/s alone "
              f"({line['pipeline_over_step']}x the jax train step at alpha {row['alpha']})", flush=True)


def run(models, device, header, peer_name="twin", compile_model=False, repeats=5, pipelines=True, as_json=False):
  """Times every setting of `models` ({setting: bench.model.Model}) on the JAX `device` beside the PyTorch peer
  `peer_name` ('none': alone) and prints a table, or one JSON line a setting; then the input pipelines alone."""
  # PyTorch runs in a process of its own, as its users run it: glibc's malloc with its default settings (this
  # one keeps freed memory for JAX, as the training entry points do) and no idle XLA threads beside it.
  with (multiprocessing.get_context("spawn").Pool(1) if peer_name != "none" else contextlib.nullcontext()) as peer:
    header = {"machine": machine.describe(device), "date": datetime.date.today().isoformat(),
              "commit": machine.code_commit(), "jax": jax.__version__, **header, "peer": peer_name}
    if peer is not None:
      import torch
      header.update(torch=torch.__version__, torch_threads=peer.apply(torch_peer.set_threads, (device.platform,)),
                    torch_mode="compile" if compile_model else "eager")
    if not as_json:
      print(", ".join(f"{k}={v}" for k, v in header.items()))
      print(f"{'alpha':>5} {'res':>4} {'batch':>5} {'dtype':>8} | {'train img/s: jax':>16} {'torch':>8} "
            f"{'ratio':>6} | {'infer img/s: jax':>16} {'torch':>8} {'ratio':>6}", flush=True)
    rows = []
    for setting, model in models.items():
      rows.append(measure(model, setting, device, peer, (compile_model, peer_name), repeats))
      print_row({**rows[-1], **header}, as_json)
  if pipelines:
    pipelines_beside(rows, header, as_json)
