r"""The CPU kernels of mnet_jax/ops/, each against the plain XLA form it replaces: the whole training step, in turns.

  python benchmarks/kernel_ab.py [--rounds 5] [--setting ALPHA,RES,BATCH,STEM_STRIDE ...] [--variant NAME ...]

For each setting it builds the training step that `mnet_jax.bench` times (the trainer's `train.train_step` with an
SGD-momentum update, jitted, state donated; mnet_jax/bench/jax_runner.py) once with every kernel (`all`), and once
with each kernel swapped for what it replaces (`depthwise=xla`, `depthwise=shifted_vjp`, `pointwise=dot`,
`batchnorm=reference`, `stem=xla_conv`), and once as a logged step (`norms=on`: the three global norms that the
trainer computes only on the steps it logs; docs/training.md#workdir), then times one step of each variant in turn, `--rounds` times, and prints
the median milliseconds a step and its ratio to `all` (> 1: the kernel makes the step that much faster). Same
process, same inputs, in turns, so a slow spell of the machine falls on every variant. CPU only.
"""

import argparse
import contextlib
import datetime
import statistics

from mnet_jax import process

SETTINGS = ("0.5,32,128,1", "1.0,224,16,2")  # the Fashion-MNIST config; the paper's network at 224 px
VARIANTS = ("depthwise=xla", "depthwise=shifted_vjp", "pointwise=dot", "batchnorm=reference", "stem=xla_conv",
            "norms=on")


@contextlib.contextmanager
def variant(name):
  """Swaps one kernel for the XLA form it replaces, or the step for a logged one, while the step is traced."""
  from mnet_jax import train
  from mnet_jax.ops import batchnorm, conv, pointwise
  import jax.numpy as jnp
  step = train.train_step
  swaps = {"norms=on": (train, "train_step", lambda *args, **kwargs: step(*args, **{**kwargs, "norms": True})),
           "pointwise=dot": (pointwise, "pointwise_conv", lambda x, kernel, kernels: jnp.dot(x, kernel)),
           "batchnorm=reference": (batchnorm, "batch_norm_act",
                                   lambda x, scale, bias, epsilon, activation, kernels:
                                   batchnorm.batch_norm_act_reference(x, scale, bias, epsilon, activation)),
           "stem=xla_conv": (conv, "MAX_PATCH_IN_CHANNELS", 0)}
  if name not in swaps:
    yield
    return
  module, attribute, value = swaps[name]
  kept = getattr(module, attribute)
  setattr(module, attribute, value)
  try:
    yield
  finally:
    setattr(module, attribute, kept)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--setting", action="append", metavar="ALPHA,RES,BATCH,STEM_STRIDE")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--variant", action="append", choices=VARIANTS, help="repeatable; default: all of them")
  args = parser.parse_args()
  process.setup_process()  # as the training entry points do
  import jax
  from mnet_jax import machine
  from mnet_jax.bench import jax_runner, model as model_lib
  from mnet_jax.bench.timing import timed
  device = jax.devices("cpu")[0]
  print(f"machine={machine.describe(device)}, "
        f"date={datetime.date.today().isoformat()}, commit={machine.code_commit()}, jax={jax.__version__}")
  print(f"{'alpha':>5} {'res':>4} {'batch':>5} {'stem':>4} | {'variant':<20} {'ms/step':>9} {'slower':>7}")
  for setting in args.setting or SETTINGS:
    alpha, resolution, batch, stem_stride = setting.split(",")
    alpha, resolution, batch, stem_stride = float(alpha), int(resolution), int(batch), int(stem_stride)
    names = ("all", *(args.variant or VARIANTS))
    steps = {}
    for name in names:
      impl = name.split("=")[1] if name.startswith("depthwise=") else "auto"
      with variant(name):
        model = model_lib.mobilenet_v1(alpha, stem_stride=stem_stride, depthwise_impl=impl)
        steps[name], _ = jax_runner.jax_runs(model, resolution, batch, device)
    times = {name: [] for name in names}
    for _ in range(args.rounds):
      for name in names:
        times[name].append(timed(steps[name]).seconds)
    base = statistics.median(times["all"])
    for name in names:
      median = statistics.median(times[name])
      print(f"{alpha:5.2f} {resolution:4d} {batch:5d} {stem_stride:4d} | {name:<20} {1000 * median:9.1f} "
            f"{median / base:7.2f}", flush=True)


if __name__ == "__main__":
  main()
