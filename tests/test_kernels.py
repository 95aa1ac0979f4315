"""The kernel sets (`config.model.kernels`): the portable one (what GPUs and TPUs run) trains Fashion-MNIST on
the CPU in float32 and bfloat16 with the losses of the C++ CPU set; the choice is recorded; bad choices are one
line."""

import json
import math
import os
import subprocess
import sys

import pytest

from mnet_jax.configs import fashion_mnist
from mnet_jax import metrics, train
from mnet_jax.errors import ConfigError
from mnet_jax.ops import resolve_kernels


def run(workdir, kernels, dtype):
  config = fashion_mnist.get_config("runlocal")
  config.model.stem_stride = 2
  config.model.kernels = kernels
  config.model.dtype = dtype
  config.num_steps = 2
  config.log_every_steps = 1
  config.data.max_eval_examples = 64
  config.wandb.mode = "disabled"
  final = train.train_and_evaluate(config, str(workdir))
  lines = [m for m in metrics.read_metrics(workdir) if "loss" in m and "split" not in m]
  with open(workdir / "config.json") as f:
    assert json.load(f)["model"]["kernels"] == final["kernels"] == kernels
  return lines


@pytest.mark.slow
def test_portable_kernels_train_with_the_cpu_kernels_losses(tmp_path):
  runs = {(kernels, dtype): run(tmp_path / f"{kernels}_{dtype}", kernels, dtype)
          for kernels in ("cpu", "portable") for dtype in ("float32", "bfloat16")}
  # float32: the first step's loss and gradient are the same sums in another order (measured 1.4e-6 and 3.4e-6
  # apart). The second step is taken at the same weights (the warmup's learning rate is 0 at step 0): its loss is
  # compared too. Later steps are not: this tiny net turns rounding differences into percent-level ones within a
  # few steps (test_train's two-device test), here already in the second step's gradient (0.5 %).
  cpu, portable = runs["cpu", "float32"], runs["portable", "float32"]
  assert portable[0]["learning_rate"] == 0.0
  for step in range(2):
    assert portable[step]["loss"] == pytest.approx(cpu[step]["loss"], rel=2e-5)
  assert portable[0]["l2_grads"] == pytest.approx(cpu[0]["l2_grads"], rel=1e-4)
  # bfloat16 keeps 8 significant bits (a rounding of up to 0.2 %) at every layer's output, and BatchNorm over the
  # last blocks' 32 values (1x1 positions) amplifies it: the two sets, rounding at different points of 28 conv +
  # BatchNorm layers, were measured 0.8 % and 3.8 % apart in these two losses, and 3.0 % and 2.9 % from float32's.
  # The bound is twice that; the losses also stay finite and near a fresh 10-class classifier's ln(10).
  for step in range(2):
    assert runs["portable", "bfloat16"][step]["loss"] == pytest.approx(runs["cpu", "bfloat16"][step]["loss"], rel=0.08)
    assert runs["portable", "bfloat16"][step]["loss"] == pytest.approx(cpu[step]["loss"], rel=0.08)
    assert runs["portable", "bfloat16"][step]["loss"] == pytest.approx(math.log(10), abs=0.5)


def test_auto_resolves_to_the_cpu_kernels_in_a_single_device_cpu_process():
  assert resolve_kernels("auto") == "cpu" and resolve_kernels("portable") == "portable"
  with pytest.raises(ConfigError, match=r"^kernels='fast' is unknown; allowed: auto, portable, cpu$"):
    resolve_kernels("fast")


@pytest.mark.slow
def test_cpu_kernels_on_several_devices_is_one_line():
  code = ("from mnet_jax.ops import resolve_kernels\nprint(resolve_kernels('auto'))\n"
          "try: resolve_kernels('cpu')\nexcept ValueError as e: print(e)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert result.stdout.splitlines() == [
      "portable", "kernels='cpu' needs a process that sees one device, this one sees 2 (XLA would gather the batch "
      "for each C++ kernel); use auto or portable"], result.stderr
