"""Running .tflite models in LiteRT's Python interpreter (ai-edge-litert, XNNPACK): op counts, batched prediction,
and batch-1 latency.

  python -m mnet_jax.export_litert --latency MODEL.tflite --threads 1,2 [--min-runs 200 --min-seconds 1]

prints one JSON line per thread count: the median wall time of >= 200 batch-1 invocations and >= 1 s (by default),
after warm-up. `mnet_jax.export` runs that in a fresh process per model, so nothing else runs beside a measurement. This
module imports neither JAX nor TensorFlow.
"""

import collections
import json
import os
import platform
import time

import numpy as np

MIN_RUNS = 200
MIN_SECONDS = 1.0
WARMUP_RUNS = 20


def interpreter(model, threads=None, delegates=True):
  """A LiteRT interpreter over a .tflite path or its bytes, tensors allocated; XNNPACK unless not `delegates`."""
  from ai_edge_litert.interpreter import Interpreter, OpResolverType
  kwargs = {"model_path": model} if isinstance(model, str) else {"model_content": bytes(model)}
  if not delegates:
    kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
  runner = Interpreter(**kwargs, num_threads=threads)
  runner.allocate_tensors()
  return runner


def op_counts(model):
  """{builtin op name: count} of a .tflite model (path or bytes), e.g. {'CONV_2D': 14, 'DEPTHWISE_CONV_2D': 13}."""
  # The interpreter's only listing of a model's ops; without XNNPACK, which would replace them by DELEGATE nodes.
  ops = interpreter(model, delegates=False)._get_ops_details()
  return dict(sorted(collections.Counter(op["op_name"] for op in ops).items()))


def io_details(runner):
  """The input and output tensors' dtype name, shape and (scale, zero point) quantization."""
  def describe(detail):
    scale, zero_point = detail["quantization"]
    return {"dtype": np.dtype(detail["dtype"]).name, "shape": [int(d) for d in detail["shape"]],
            "scale": float(scale), "zero_point": int(zero_point)}
  return {"input": describe(runner.get_input_details()[0]), "output": describe(runner.get_output_details()[0])}


def quantize(images, detail):
  """float32 images as the int8 model's input: round(x / scale) + zero point, clipped to int8."""
  scale, zero_point = detail["quantization"]
  return np.clip(np.round(images / scale) + zero_point, -128, 127).astype(np.int8)


class Predictor:
  """Outputs of a .tflite model for batches of float32 images of one batch size (the model is resized to it);
  int8 inputs are quantized, and int8 outputs come back dequantized."""

  def __init__(self, model, batch_size, threads=None):
    from ai_edge_litert.interpreter import Interpreter
    kwargs = {"model_path": model} if isinstance(model, str) else {"model_content": bytes(model)}
    self.runner = Interpreter(**kwargs, num_threads=threads)
    inp = self.runner.get_input_details()[0]
    self.runner.resize_tensor_input(inp["index"], [batch_size, *inp["shape"][1:]])
    self.runner.allocate_tensors()
    self.input, self.output = self.runner.get_input_details()[0], self.runner.get_output_details()[0]

  def __call__(self, images):
    images = np.asarray(images, np.float32)
    if self.input["dtype"] == np.int8:
      images = quantize(images, self.input)
    self.runner.set_tensor(self.input["index"], images)
    self.runner.invoke()
    out = self.runner.get_tensor(self.output["index"])
    if self.output["dtype"] == np.int8:
      scale, zero_point = self.output["quantization"]
      out = (out.astype(np.float32) - zero_point) * scale
    return out


def latency(path, threads, min_runs=MIN_RUNS, min_seconds=MIN_SECONDS):
  """{'latency_ms', 'runs', 'threads'}: the median wall time of >= min_runs batch-1 invocations lasting >= min_seconds
  in all, of the model at `path`."""
  runner = interpreter(path, threads)
  detail = runner.get_input_details()[0]
  image = np.random.default_rng(0).uniform(-1, 1, detail["shape"]).astype(np.float32)
  runner.set_tensor(detail["index"], quantize(image, detail) if detail["dtype"] == np.int8 else image)
  for _ in range(WARMUP_RUNS):
    runner.invoke()
  times, start = [], time.perf_counter()
  while len(times) < min_runs or time.perf_counter() - start < min_seconds:
    begin = time.perf_counter()
    runner.invoke()
    times.append(time.perf_counter() - begin)
  return {"latency_ms": 1000 * float(np.median(times)), "runs": len(times), "threads": threads}


def machine():
  """The CPU model and the cores this process may use."""
  name = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
  except OSError:
    pass
  return {"cpu": name, "cores": cores()}


def cores():
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def main(argv=None):
  import argparse  # a child process of mnet_jax.export: its caller checks the values
  parser = argparse.ArgumentParser(prog="python -m mnet_jax.export_litert")
  parser.add_argument("--latency", required=True, metavar="MODEL.tflite")
  parser.add_argument("--threads", required=True, help="thread counts, e.g. 1,2")
  parser.add_argument("--min-runs", type=int, default=MIN_RUNS)
  parser.add_argument("--min-seconds", type=float, default=MIN_SECONDS)
  args = parser.parse_args(argv)
  for threads in [int(t) for t in args.threads.split(",")]:
    print(json.dumps(latency(args.latency, threads, args.min_runs, args.min_seconds)), flush=True)


if __name__ == "__main__":
  main()
