r"""Throughput of this project's MobileNets against the same architecture in PyTorch, in the same run.

  python -m mnet_jax.bench                          # the CPU acceptance set (fp32), MobileNet V1
  python -m mnet_jax.bench --model mobilenet_v2     # any family of mnet_jax.models (--minimalistic: V3's variant)
  python -m mnet_jax.bench --setting 0.5,32,128,float32 --json
  python -m mnet_jax.bench --device gpu             # alpha 1, 224 px, bf16, batch 256; PyTorch with torch.compile
  python -m mnet_jax.bench --device gpu --peer timm  # the peer is timm's mobilenetv1_100 (alpha 1 only)
  python -m mnet_jax.bench --peer none ...           # this project's model alone (benchmarks/gpu_check.sh)
  python -m mnet_jax.bench --kernel-sizes 3,5,7,9   # MixConv depthwise layers (one size: k x k), in both models
  python -m mnet_jax.bench --pipeline [--json]      # the input modes alone (input_modes.py)

For each setting (alpha, resolution, batch, dtype) it times the trainer's jitted training step (`train.train_step`
with SGD-momentum; jax_runner.py) and the inference forward pass of both models on random real-valued images:
warm-up first, then the median of several repeats, the two frameworks timed in turns (compare.py). It also times
the input pipelines alone (Fashion-MNIST from its IDX files, and the ImageNet-style Inception crop on JPEGs) for
comparison with the step. torch is an optional extra (`pip install .[bench]`), imported only in the PyTorch
peer's child process (torch_peer.py) and here. docs/benchmarks.md gives the method.
"""

import argparse

import jax

from mnet_jax import models as models_lib, process
from mnet_jax.bench import compare, input_modes, model as model_lib, torch_peer
from mnet_jax.count import parse_kernel_sizes
from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.models.mobilenet_v1 import KERNEL_SPLITS
from mnet_jax.ops import KERNELS, resolve_kernels
from mnet_jax.ops.depthwise import CHOICES, resolve_impl


def parser():
  p = OneLineArgumentParser(prog="python -m mnet_jax.bench", description=__doc__.splitlines()[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--setting", action="append", type=str, metavar="ALPHA,RES,BATCH,DTYPE",
                 help="repeatable; default: the acceptance set of the device")
  p.add_argument("--model", default="mobilenet_v1", help=f"the family, one of {', '.join(models_lib.NAMES)}")
  p.add_argument("--minimalistic", action="store_true", help="V3's variant: no SE, ReLU, 3x3 kernels")
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  p.add_argument("--stem-stride", type=int, choices=(1, 2), default=2)
  p.add_argument("--kernels", choices=KERNELS, default="auto", help="the model's kernel set (mnet_jax/ops)")
  p.add_argument("--depthwise-impl", choices=CHOICES, default="auto", help="auto: the kernel set's")
  p.add_argument("--peer", choices=compare.PEERS, default="twin", help="the PyTorch model timed beside this one")
  p.add_argument("--kernel-sizes", default="3", help="depthwise kernel sizes: k, or MixConv's e.g. 3,5,7,9")
  p.add_argument("--kernel-split", default="equal", help=f"MixConv channel split: {' or '.join(KERNEL_SPLITS)}")
  p.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=None,
                 help="torch.compile the peer (default: on for gpu, off (eager) for cpu)")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--no-pipeline", dest="pipeline", action="store_false", help="skip the input pipelines")
  p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
  p.add_argument("--pipeline", dest="input_modes", action="store_true",
                 help="time the input modes instead (mnet_jax/bench/input_modes.py); with --resolutions, --images")
  p.add_argument("--resolutions", type=str, default="224,192,160,128", help="with --pipeline")
  p.add_argument("--images", type=int, default=256, help="synthetic JPEGs made for --pipeline")
  return p


def jax_device(name):
  try:
    return jax.devices(name)[0]
  except RuntimeError:
    raise ConfigError(f"--device {name} is not available; JAX sees: "
                      f"{', '.join(sorted({d.platform for d in jax.devices()}))}") from None


def check_peer(peer, settings, stem_stride, kernel_sizes, model):
  """One line, before any work, when the peer cannot run: PyTorch (or timm) missing, or a model timm lacks."""
  if peer == "none":
    return
  try:
    import torch  # noqa: F401
  except ImportError:
    raise ConfigError("the benchmark needs PyTorch for the peer model: pip install '.[bench]' (or --peer none)") \
        from None
  if peer == "timm":
    try:
      import timm  # noqa: F401
    except ImportError:
      raise ConfigError("--peer timm needs timm: pip install timm") from None
    if model != "mobilenet_v1" or any(alpha != 1.0 for alpha, *_ in settings) or stem_stride != 2 or \
        kernel_sizes != (3,):
      raise ConfigError(f"--peer timm is {torch_peer.TIMM_MODEL}: MobileNet V1, alpha 1.0, a stride-2 stem and 3x3 "
                        "depthwise kernels only; use --peer twin")


@exit_on_config_error
def main(argv=None):
  args = parser().parse_args(argv)
  if args.repeats < 1:
    raise ConfigError(f"--repeats={args.repeats} is not allowed: it must be >= 1")
  if args.input_modes:
    if args.images < 1:
      raise ConfigError(f"--images={args.images} is not allowed: it must be >= 1")
    resolutions = input_modes.parse_resolutions(args.resolutions)
    process.setup_process()
    input_modes.run(resolutions, args.images, args.repeats, as_json=args.json)
    return
  settings = [compare.parse_setting(s) for s in args.setting] if args.setting else (
      compare.GPU_SETTINGS if args.device == "gpu" else compare.CPU_SETTINGS)
  kernel_sizes = parse_kernel_sizes(args.kernel_sizes)
  options = models_lib.model_options(args.model, kernel_sizes=kernel_sizes, kernel_split=args.kernel_split,
                                     minimalistic=args.minimalistic)
  models = {setting: model_lib.build(args.model, setting[0], setting[3], stem_stride=args.stem_stride,
                                     kernels=args.kernels, depthwise_impl=args.depthwise_impl, **options)
            for setting in settings}
  process.setup_process()
  device = jax_device(args.device)
  check_peer(args.peer, settings, args.stem_stride, kernel_sizes, args.model)
  kernels = resolve_kernels(args.kernels)
  header = {"model": args.model, "minimalistic": args.minimalistic, "device": args.device, "kernels": kernels,
            "depthwise_impl": resolve_impl(args.depthwise_impl, kernels),
            "stem_stride": args.stem_stride, "kernel_sizes": list(kernel_sizes), "kernel_split": args.kernel_split}
  compile_model = args.device == "gpu" if args.torch_compile is None else args.torch_compile
  compare.run(models, device, header, args.peer, compile_model, args.repeats, args.pipeline, args.json)


if __name__ == "__main__":
  main()
