r"""Throughput of this project's MobileNet V1 against the same architecture in PyTorch, in the same run.

  python -m mnet_jax.bench                          # the CPU acceptance set (fp32)
  python -m mnet_jax.bench --setting 0.5,32,128,float32 --json
  python -m mnet_jax.bench --device gpu             # alpha 1, 224 px, bf16, batch 256; PyTorch with torch.compile
  python -m mnet_jax.bench --device gpu --peer timm  # the peer is timm's mobilenetv1_100 (alpha 1 only)
  python -m mnet_jax.bench --peer none ...           # this project's model alone (benchmarks/gpu_check.sh)
  python -m mnet_jax.bench --kernel-sizes 3,5,7,9   # MixConv depthwise layers (one size: k x k), in both models
  python -m mnet_jax.bench --pipeline [--json]      # the input modes alone (mnet_jax/bench_pipeline.py)

For each setting (alpha, resolution, batch, dtype) it times the jitted training step (forward, backward,
SGD-momentum update, BatchNorm statistics) and the inference forward pass of both models on random
real-valued images: warm-up first, then the median of several repeats, the two frameworks timed in turns
(one JAX timing, one PyTorch timing, ...) so that the machine's slow spells fall on both. It also times the
input pipelines alone (Fashion-MNIST from its IDX files, and the ImageNet-style Inception crop on JPEGs) for
comparison with the step. torch is an optional extra (`pip install .[bench]`), imported only here. The PyTorch
timings run in a child process of the same run, with the C library's default malloc settings (this process
calls `process.setup_process()` for JAX, as the training entry points do).
"""

import argparse
import contextlib
import datetime
import json
import multiprocessing
import os
import platform
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnet_jax import process
from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.ops import KERNELS, resolve_kernels
from mnet_jax.ops.depthwise import CHOICES, resolve_impl
from mnet_jax.count import parse_kernel_sizes
from mnet_jax.models.mobilenet_v1 import DTYPES, KERNEL_SPLITS, MobileNetV1, check_alpha, check_resolution

CPU_SETTINGS = ((1.0, 32, 128, "float32"), (0.5, 32, 128, "float32"), (0.25, 32, 128, "float32"),
                (1.0, 224, 16, "float32"))
GPU_SETTINGS = ((1.0, 224, 256, "bfloat16"),)
NUM_CLASSES = 1000
PEERS = ("twin", "timm", "none")  # twin: torch_model below; timm: TIMM_MODEL (alpha 1, stride-2 stem); none: JAX only
TIMM_MODEL = "mobilenetv1_100"
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


def rounded(value, digits):
  return None if value is None else round(value, digits)


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
  torch, jax, ...), so that a slow spell of the machine falls on both; the peer's is None without a peer."""
  jax_seconds, torch_seconds = [], []
  for _ in range(repeats):
    jax_seconds.append(time_calls(jax_run, calls))
    if peer is not None:
      torch_seconds.append(peer.apply(torch_time, (kind, calls)))
  rate = lambda seconds: images_per_call * calls / float(np.median(seconds)) if seconds else None  # noqa: E731
  return rate(jax_seconds), rate(torch_seconds)


# This project's model ---------------------------------------------------------------------------


def jax_runs(model, resolution, batch, device):
  """The training step and the inference forward of this project's model, compiled and run once each."""
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


def torch_model(layers):
  """The same architecture in PyTorch, built from `architecture()`'s layers: each conv followed by BatchNorm and
  ReLU6, global average pool, fully connected. A depthwise layer with several kernel sizes is MixConv as timm's
  MixedConv2d does it: split the channels, one depthwise conv per group, concatenate."""
  import torch
  from torch import nn

  class MixedDepthwise(nn.Module):
    def __init__(self, groups, stride):
      super().__init__()
      self.splits = [channels for _, channels in groups]
      self.convs = nn.ModuleList(nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False) for k, c in groups)

    def forward(self, x):
      return torch.cat([conv(part) for conv, part in zip(self.convs, torch.split(x, self.splits, 1))], 1)

  def conv(layer):
    if layer.kind == "depthwise" and len(layer.groups) > 1:
      return MixedDepthwise(layer.groups, layer.stride)
    groups = layer.in_channels if layer.kind == "depthwise" else 1
    return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.kernel_size // 2,
                     groups=groups, bias=False)

  *convs, classifier = layers
  modules = []
  for layer in convs:
    modules += [conv(layer), nn.BatchNorm2d(layer.out_channels, eps=1e-3, momentum=0.01), nn.ReLU6(inplace=True)]
  return nn.Sequential(*modules, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.001),
                       nn.Linear(classifier.in_channels, classifier.out_channels))


PEER_RUNS = {}  # in the peer's process: the model and its "train" and "infer" runs, of the last setting built


def torch_setup(layers, resolution, batch, dtype, platform_name, compile_model, peer_name="twin"):
  """Builds the PyTorch model (this file's twin of `layers`, or timm's MobileNet V1) and its training and inference
  runs in the peer's process, warmed up."""
  import torch
  torch_device = torch.device("cuda" if platform_name == "gpu" else "cpu")
  sync = torch.cuda.synchronize if torch_device.type == "cuda" else (lambda: None)
  torch.manual_seed(0)
  if peer_name == "timm":
    import timm
    model = timm.create_model(TIMM_MODEL, num_classes=NUM_CLASSES).to(torch_device)
  else:
    model = torch_model(layers).to(torch_device)
  rng = np.random.default_rng(0)
  images = torch.from_numpy(rng.uniform(-1, 1, (batch, 3, resolution, resolution)).astype(np.float32))
  images = images.to(torch_device)  # NCHW: on CPU, PyTorch's channels_last depthwise convolutions are far slower
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


def batches_rate(batches, batch, num_batches):
  """img/s of an iterator of batches of `batch` images, after its first batch."""
  next(batches)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  return batch * num_batches / (time.perf_counter() - start)


def fashion_mnist_pipeline_rate(resolution, batch, num_batches):
  """img/s of the training batches of mnet_jax/configs/fashion_mnist.py (IDX files, shuffle, flip; uint8 out)."""
  from mnet_jax.configs import fashion_mnist
  from mnet_jax import data as data_lib
  config = fashion_mnist.get_config(f"resolution={resolution}")
  config.batch_size = batch
  return batches_rate(data_lib.build(config).train_batches(0), batch, num_batches)


def imagenet_pipeline_rate(resolution, batch, num_batches):
  """img/s of the ImageNet training preprocessing of the default `jpeg` input mode (decode the Inception crop's
  window, resize, flip) under tf.data, on bench_pipeline's synthetic ImageNet-like JPEGs; the input modes against
  each other: `--pipeline` (bench_pipeline.py)."""
  import tensorflow as tf
  from mnet_jax.configs import imagenet
  from mnet_jax import bench_pipeline, data as data_lib
  data_lib.hide_gpus_from_tensorflow()
  min_area = imagenet.get_config().data.min_area
  ds = tf.data.Dataset.from_tensor_slices(bench_pipeline.synthetic_jpegs(64)).repeat().enumerate()
  ds = ds.map(lambda i, jpeg: data_lib.jpeg_crop(jpeg, tf.stack([tf.constant(0, tf.int64), i]), resolution,
                                                 min_area, True), num_parallel_calls=tf.data.AUTOTUNE)
  return batches_rate(iter(ds.batch(batch).prefetch(2).as_numpy_iterator()), batch, num_batches)


# Main -------------------------------------------------------------------------------------------


def machine(device):
  if device.platform == "cpu":
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
  return device.device_kind


def code_commit(directory=os.path.dirname(os.path.abspath(__file__))):
  """The commit of the checkout holding `directory` (`git rev-parse --short HEAD`, "+dirty" when tracked files
  differ from it); "unknown" outside git."""
  def git(*args):
    return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=30)
  try:
    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
      return "unknown"
    return head.stdout.strip() + ("+dirty" if git("diff", "--quiet", "HEAD", "--").returncode == 1 else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


@exit_on_config_error
def main(argv=None):
  parser = OneLineArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--setting", action="append", type=str, metavar="ALPHA,RES,BATCH,DTYPE",
                      help="repeatable; default: the acceptance set of the device")
  parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  parser.add_argument("--stem-stride", type=int, choices=(1, 2), default=2)
  parser.add_argument("--kernels", choices=KERNELS, default="auto", help="the model's kernel set (mnet_jax/ops)")
  parser.add_argument("--depthwise-impl", choices=CHOICES, default="auto", help="auto: the kernel set's")
  parser.add_argument("--peer", choices=PEERS, default="twin", help="the PyTorch model timed beside this one")
  parser.add_argument("--kernel-sizes", default="3", help="depthwise kernel sizes: k, or MixConv's e.g. 3,5,7,9")
  parser.add_argument("--kernel-split", default="equal", help=f"MixConv channel split: {' or '.join(KERNEL_SPLITS)}")
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
    process.setup_process()
    bench_pipeline.run(bench_pipeline.parse_resolutions(args.resolutions), args.images, args.repeats,
                       as_json=args.json)
    return
  settings = [parse_setting(s) for s in args.setting] if args.setting else (
      GPU_SETTINGS if args.device == "gpu" else CPU_SETTINGS)
  kernel_sizes = parse_kernel_sizes(args.kernel_sizes)
  models = {setting: MobileNetV1(alpha=setting[0], num_classes=NUM_CLASSES, stem_stride=args.stem_stride,
                                 dtype=setting[3], kernels=args.kernels, depthwise_impl=args.depthwise_impl,
                                 kernel_sizes=kernel_sizes, kernel_split=args.kernel_split) for setting in settings}
  for model in models.values():
    model.layers()  # bad kernel sizes: one line before any work
  process.setup_process()
  try:
    device = jax.devices(args.device)[0]
  except RuntimeError:
    raise ConfigError(f"--device {args.device} is not available; JAX sees: "
                      f"{', '.join(sorted({d.platform for d in jax.devices()}))}") from None
  if args.peer != "none":
    try:
      import torch
    except ImportError:
      raise ConfigError("the benchmark needs PyTorch for the peer model: pip install '.[bench]' (or --peer none)") \
          from None
  if args.peer == "timm":
    try:
      import timm  # noqa: F401
    except ImportError:
      raise ConfigError("--peer timm needs timm: pip install timm") from None
    if any(alpha != 1.0 for alpha, *_ in settings) or args.stem_stride != 2 or kernel_sizes != (3,):
      raise ConfigError(f"--peer timm is {TIMM_MODEL}: alpha 1.0, a stride-2 stem and 3x3 depthwise kernels only; "
                        "use --peer twin")
  compile_model = args.device == "gpu" if args.torch_compile is None else args.torch_compile
  kernels = resolve_kernels(args.kernels)
  # PyTorch runs in a process of its own, as its users run it: glibc's malloc with its default settings (this
  # one keeps freed memory for JAX, as the training entry points do) and no idle XLA threads beside it.
  with (multiprocessing.get_context("spawn").Pool(1) if args.peer != "none" else contextlib.nullcontext()) as peer:
    header = {"machine": machine(device), "date": datetime.date.today().isoformat(), "commit": code_commit(),
              "jax": jax.__version__,
              "device": args.device, "kernels": kernels, "depthwise_impl": resolve_impl(args.depthwise_impl, kernels),
              "stem_stride": args.stem_stride, "kernel_sizes": list(kernel_sizes), "kernel_split": args.kernel_split,
              "peer": args.peer}
    if peer is not None:
      header.update(torch=torch.__version__, torch_threads=peer.apply(set_torch_threads, (args.device,)),
                    torch_mode="compile" if compile_model else "eager")
    if not args.json:
      print(", ".join(f"{k}={v}" for k, v in header.items()))
      print(f"{'alpha':>5} {'res':>4} {'batch':>5} {'dtype':>8} | {'train img/s: jax':>16} {'torch':>8} {'ratio':>6} | "
            f"{'infer img/s: jax':>16} {'torch':>8} {'ratio':>6}", flush=True)
    rows = []
    for alpha, resolution, batch, dtype in settings:
      calls = 1 if resolution * resolution * batch >= 224 * 224 * 16 else 3
      model = models[alpha, resolution, batch, dtype]
      jax_train_run, jax_infer_run = jax_runs(model, resolution, batch, device)
      if peer is not None:
        peer.apply(torch_setup, (model.layers(), resolution, batch, dtype, args.device, compile_model, args.peer))
      jax_train, torch_train = rates_in_turns(jax_train_run, peer, "train", batch, calls, args.repeats)
      jax_infer, torch_infer = rates_in_turns(jax_infer_run, peer, "infer", batch, calls, args.repeats)
      row = {"alpha": alpha, "resolution": resolution, "batch": batch, "dtype": dtype,
             "jax_train_img_s": rounded(jax_train, 1), "torch_train_img_s": rounded(torch_train, 1),
             "train_ratio": rounded(torch_train and jax_train / torch_train, 3),
             "jax_infer_img_s": rounded(jax_infer, 1), "torch_infer_img_s": rounded(torch_infer, 1),
             "infer_ratio": rounded(torch_infer and jax_infer / torch_infer, 3), **header}
      rows.append(row)
      if args.json:
        print(json.dumps(row), flush=True)
      else:
        cells = [f"{row[k]:{width}.{digits}f}" if row[k] is not None else f"{'-':>{width}}" for k, width, digits in (
            ("jax_train_img_s", 16, 1), ("torch_train_img_s", 8, 1), ("train_ratio", 6, 2),
            ("jax_infer_img_s", 16, 1), ("torch_infer_img_s", 8, 1), ("infer_ratio", 6, 2))]
        print(f"{alpha:5.2f} {resolution:4d} {batch:5d} {dtype:>8} | {' '.join(cells[:3])} | {' '.join(cells[3:])}",
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
