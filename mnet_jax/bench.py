r"""Throughput of this project's MobileNet V1 against the same architecture in PyTorch, in the same run.

  python -m mnet_jax.bench                          # the CPU acceptance set (fp32)
  python -m mnet_jax.bench --setting 0.5,32,128,float32 --json
  python -m mnet_jax.bench --device gpu             # alpha 1, 224 px, bf16, batch 256; PyTorch with torch.compile
  python -m mnet_jax.bench --pipeline [--json]      # the input modes alone (mnet_jax/bench_pipeline.py)

For each setting (alpha, resolution, batch, dtype) it times the jitted training step (forward, backward,
SGD-momentum update, BatchNorm statistics) and the inference forward pass of both models on random
real-valued images: warm-up first, then the median of several repeats, the two frameworks timed in turns
(one JAX timing, one PyTorch timing, ...) so that the machine's slow spells fall on both. It also times the
input pipelines alone (Fashion-MNIST from its IDX files, and the ImageNet-style Inception crop on JPEGs) for
comparison with the step. torch is an optional extra (`pip install .[bench]`), imported only here. The PyTorch
timings run in a child process of the same run, with the C library's default malloc settings (this process
sets `host_memory.keep_freed_memory()` for JAX, as the training entry points do).
"""

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnet_jax import host_memory
from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.ops.depthwise import CHOICES, resolve_impl
from mnet_jax.models.mobilenet_v1 import BLOCKS, DTYPES, STEM_CHANNELS, MobileNetV1, check_alpha, check_resolution

CPU_SETTINGS = ((1.0, 32, 128, "float32"), (0.5, 32, 128, "float32"), (0.25, 32, 128, "float32"),
                (1.0, 224, 16, "float32"))
GPU_SETTINGS = ((1.0, 224, 256, "bfloat16"),)
NUM_CLASSES = 1000
LEARNING_RATE, MOMENTUM = 0.01, 0.9


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


def time_calls(run, calls):
  """Seconds taken by `calls` calls of run() (which blocks until done), after a pause that lets the other
  framework's idle threads stop spinning."""
  time.sleep(0.05)
  start = time.perf_counter()
  for _ in range(calls):
    run()
  return time.perf_counter() - start


def rates_in_turns(jax_run, peer, kind, images_per_call, calls, repeats):
  """Median images/s of jax_run and of the peer's `kind` run over `repeats` timings each, taken in turns (jax,
  torch, jax, ...), so that a slow spell of the machine falls on both."""
  jax_seconds, torch_seconds = [], []
  for _ in range(repeats):
    jax_seconds.append(time_calls(jax_run, calls))
    torch_seconds.append(peer.apply(torch_time, (kind, calls)))
  rate = lambda seconds: images_per_call * calls / float(np.median(seconds))  # noqa: E731
  return rate(jax_seconds), rate(torch_seconds)


# This project's model ---------------------------------------------------------------------------


def jax_runs(alpha, resolution, batch, dtype, stem_stride, depthwise_impl, device):
  """The training step and the inference forward of this project's model, compiled and run once each."""
  model = MobileNetV1(alpha=alpha, num_classes=NUM_CLASSES, stem_stride=stem_stride, dtype=dtype,
                      depthwise_impl=depthwise_impl)
  rng = np.random.default_rng(0)
  images = jax.device_put(rng.uniform(-1, 1, (batch, resolution, resolution, 3)).astype(np.float32), device)
  labels = jax.device_put(rng.integers(0, NUM_CLASSES, batch).astype(np.int32), device)
  variables = jax.jit(model.init)(jax.device_put(jax.random.key(0), device), images[:1])
  tx = optax.sgd(LEARNING_RATE, MOMENTUM)
  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

  @jax.jit
  def forward(variables, images):
    return model.apply(variables, images, train=False)

  def train_step(state, images, labels, rng):
    params, batch_stats, opt_state = state

    def loss_fn(params):
      logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, images, train=True,
                                    mutable=["batch_stats"], rngs={"dropout": rng})
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  step = jax.jit(train_step, donate_argnums=0)
  dropout_rng = jax.random.key(1)
  state, loss = step(state, images, labels, dropout_rng)  # warm-up: compile and run once
  loss.block_until_ready()

  def train():
    nonlocal state
    state, loss = step(state, images, labels, dropout_rng)
    loss.block_until_ready()

  def infer():
    forward({"params": state[0], "batch_stats": state[1]}, images).block_until_ready()

  train()
  infer()  # compiles
  infer()
  return train, infer


# The PyTorch peer -------------------------------------------------------------------------------


def torch_model(alpha, stem_stride, num_classes):
  """The same architecture in PyTorch: stem 3x3 conv, 13 depthwise-separable blocks, each conv followed by
  BatchNorm and ReLU6, global average pool, fully connected. Same channel widths as `architecture()`."""
  import torch
  from torch import nn

  def conv_bn(in_channels, out_channels, kernel_size, stride, groups=1):
    return [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01), nn.ReLU6(inplace=True)]

  channels = max(int(STEM_CHANNELS * alpha), 8)
  layers = conv_bn(3, channels, 3, stem_stride)
  for depth, stride in BLOCKS:
    out_channels = max(int(depth * alpha), 8)
    layers += conv_bn(channels, channels, 3, stride, groups=channels) + conv_bn(channels, out_channels, 1, 1)
    channels = out_channels
  return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.001),
                       nn.Linear(channels, num_classes))


PEER_RUNS = {}  # in the peer's process: the model and its "train" and "infer" runs, of the last setting built


def torch_setup(alpha, resolution, batch, dtype, stem_stride, platform_name, compile_model):
  """Builds the PyTorch model and its training and inference runs in the peer's process, warmed up."""
  import torch
  torch_device = torch.device("cuda" if platform_name == "gpu" else "cpu")
  sync = torch.cuda.synchronize if torch_device.type == "cuda" else (lambda: None)
  torch.manual_seed(0)
  model = torch_model(alpha, stem_stride, NUM_CLASSES).to(torch_device)
  rng = np.random.default_rng(0)
  images = torch.from_numpy(rng.uniform(-1, 1, (batch, 3, resolution, resolution)).astype(np.float32))
  images = images.to(torch_device)  # NCHW: on CPU, channels_last depthwise convolutions are ~40x slower here
  labels = torch.from_numpy(rng.integers(0, NUM_CLASSES, batch)).to(torch_device)
  optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
  run_model = torch.compile(model) if compile_model else model
  autocast = torch.autocast(torch_device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

  def train():
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      loss = torch.nn.functional.cross_entropy(run_model(images), labels)
    loss.backward()
    optimizer.step()
    sync()

  def infer():
    with torch.inference_mode(), autocast:
      run_model(images)
    sync()

  for training in (True, False):  # warm-up, also of torch.compile's graph for each mode
    model.train(training)
    for _ in range(2):
      train() if training else infer()
  PEER_RUNS.update(model=model, train=train, infer=infer)


def torch_time(kind, calls):
  """Seconds for `calls` calls of the peer's `kind` run ("train" or "infer"), in the peer's process."""
  PEER_RUNS["model"].train(kind == "train")
  return time_calls(PEER_RUNS[kind], calls)


def set_torch_threads(platform_name):
  """One thread per core on CPU (in the peer's process: the setting holds for its later calls); returns the count."""
  import torch
  if platform_name == "cpu":
    torch.set_num_threads(os.cpu_count())
  return torch.get_num_threads()


# Input pipelines --------------------------------------------------------------------------------


def fashion_mnist_pipeline_rate(resolution, batch, num_batches):
  """img/s of the training batches of experiments/fashion_mnist.py (IDX files, shuffle, flip, resize)."""
  from experiments import fashion_mnist
  from mnet_jax import data as data_lib
  config = fashion_mnist.get_config(f"resolution={resolution}")
  config.batch_size = batch
  batches = data_lib.build(config).train_batches(0)
  next(batches)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  return batch * num_batches / (time.perf_counter() - start)


def imagenet_pipeline_rate(resolution, batch, num_batches):
  """img/s of the ImageNet training preprocessing (decode JPEG, Inception crop, flip, resize) under tf.data,
  on random 500x375 JPEGs (ImageNet's typical size)."""
  import tensorflow as tf
  from mnet_jax import data as data_lib
  data_lib.hide_gpus_from_tensorflow()
  rng = np.random.default_rng(0)
  jpegs = [tf.io.encode_jpeg(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).numpy() for _ in range(64)]
  ds = tf.data.Dataset.from_tensor_slices(jpegs).repeat().enumerate()
  ds = ds.map(lambda i, jpeg: data_lib.inception_crop(jpeg, tf.stack([tf.constant(0, tf.int64), i]), resolution,
                                                      0.05, True), num_parallel_calls=tf.data.AUTOTUNE)
  batches = iter(ds.batch(batch).prefetch(2).as_numpy_iterator())
  next(batches)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  return batch * num_batches / (time.perf_counter() - start)


# Main -------------------------------------------------------------------------------------------


def machine(device):
  if device.platform == "cpu":
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
  return device.device_kind


@exit_on_config_error
def main(argv=None):
  parser = OneLineArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--setting", action="append", type=str, metavar="ALPHA,RES,BATCH,DTYPE",
                      help="repeatable; default: the acceptance set of the device")
  parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  parser.add_argument("--stem-stride", type=int, choices=(1, 2), default=2)
  parser.add_argument("--depthwise-impl", choices=CHOICES, default="auto")
  parser.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=None,
                      help="torch.compile the peer (default: on for gpu, off (eager) for cpu)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--no-pipeline", dest="pipeline", action="store_false", help="skip the input pipelines")
  parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
  parser.add_argument("--pipeline", dest="input_modes", action="store_true",
                      help="time the input modes instead (mnet_jax/bench_pipeline.py); with --resolutions, --images")
  parser.add_argument("--resolutions", type=str, default="224,192,160,128", help="with --pipeline")
  parser.add_argument("--images", type=int, default=256, help="synthetic JPEGs made for --pipeline")
  args = parser.parse_args(argv)
  if args.repeats < 1:
    raise ConfigError(f"--repeats={args.repeats} is not allowed: it must be >= 1")
  if args.input_modes:
    if args.images < 1:
      raise ConfigError(f"--images={args.images} is not allowed: it must be >= 1")
    from mnet_jax import bench_pipeline
    bench_pipeline.run(bench_pipeline.parse_resolutions(args.resolutions), args.images, args.repeats,
                       as_json=args.json)
    return
  settings = [parse_setting(s) for s in args.setting] if args.setting else (
      GPU_SETTINGS if args.device == "gpu" else CPU_SETTINGS)
  host_memory.keep_freed_memory()
  try:
    device = jax.devices(args.device)[0]
  except RuntimeError:
    raise ConfigError(f"--device {args.device} is not available; JAX sees: "
                      f"{', '.join(sorted({d.platform for d in jax.devices()}))}") from None
  try:
    import torch
  except ImportError:
    raise ConfigError("the benchmark needs PyTorch for the peer model: pip install '.[bench]'") from None
  compile_model = args.device == "gpu" if args.torch_compile is None else args.torch_compile
  # PyTorch runs in a process of its own, as its users run it: glibc's malloc with its default settings (this
  # one keeps freed memory for JAX, as the training entry points do) and no idle XLA threads beside it.
  with multiprocessing.get_context("spawn").Pool(1) as peer:
    header = {"machine": machine(device), "date": datetime.date.today().isoformat(), "jax": jax.__version__,
              "torch": torch.__version__, "torch_threads": peer.apply(set_torch_threads, (args.device,)),
              "device": args.device, "depthwise_impl": resolve_impl(args.depthwise_impl),
              "stem_stride": args.stem_stride, "torch_mode": "compile" if compile_model else "eager"}
    if not args.json:
      print(", ".join(f"{k}={v}" for k, v in header.items()))
      print(f"{'alpha':>5} {'res':>4} {'batch':>5} {'dtype':>8} | {'train img/s: jax':>16} {'torch':>8} {'ratio':>6} | "
            f"{'infer img/s: jax':>16} {'torch':>8} {'ratio':>6}", flush=True)
    rows = []
    for alpha, resolution, batch, dtype in settings:
      calls = 1 if resolution * resolution * batch >= 224 * 224 * 16 else 3
      jax_train_run, jax_infer_run = jax_runs(alpha, resolution, batch, dtype, args.stem_stride,
                                               args.depthwise_impl, device)
      peer.apply(torch_setup, (alpha, resolution, batch, dtype, args.stem_stride, args.device, compile_model))
      jax_train, torch_train = rates_in_turns(jax_train_run, peer, "train", batch, calls, args.repeats)
      jax_infer, torch_infer = rates_in_turns(jax_infer_run, peer, "infer", batch, calls, args.repeats)
      row = {"alpha": alpha, "resolution": resolution, "batch": batch, "dtype": dtype,
             "jax_train_img_s": round(jax_train, 1), "torch_train_img_s": round(torch_train, 1),
             "train_ratio": round(jax_train / torch_train, 3), "jax_infer_img_s": round(jax_infer, 1),
             "torch_infer_img_s": round(torch_infer, 1), "infer_ratio": round(jax_infer / torch_infer, 3), **header}
      rows.append(row)
      if args.json:
        print(json.dumps(row), flush=True)
      else:
        print(f"{alpha:5.2f} {resolution:4d} {batch:5d} {dtype:>8} | {jax_train:16.1f} {torch_train:8.1f} "
              f"{row['train_ratio']:6.2f} | {jax_infer:16.1f} {torch_infer:8.1f} {row['infer_ratio']:6.2f}",
              flush=True)
  if args.pipeline:
    for name, rate_fn in (("fashion_mnist", fashion_mnist_pipeline_rate), ("imagenet_inception_crop",
                                                                           imagenet_pipeline_rate)):
      seen = set()
      for row in rows:  # one measurement per (resolution, batch)
        if (row["resolution"], row["batch"]) in seen:
          continue
        seen.add((row["resolution"], row["batch"]))
        num_batches = max(4, int(2000 / row["batch"])) if row["resolution"] <= 64 else 4
        rate = rate_fn(row["resolution"], row["batch"], num_batches)
        line = {"pipeline": name, "resolution": row["resolution"], "batch": row["batch"],
                "pipeline_img_s": round(rate, 1), "jax_train_img_s": row["jax_train_img_s"],
                "pipeline_over_step": round(rate / row["jax_train_img_s"], 2), **header}
        if args.json:
          print(json.dumps(line), flush=True)
        else:
          print(f"input pipeline {name} at {row['resolution']} px, batch {row['batch']}: {rate:.0f} img/s alone "
                f"({line['pipeline_over_step']}x the jax train step at alpha {row['alpha']})", flush=True)


if __name__ == "__main__":
  main()
