"""The kernel sets (`config.model.kernels`): the portable one (what GPUs and TPUs run) and the C++ CPU one give the
same gradients leaf by leaf in float32 and float32's function in bfloat16; a run checkpointed under one resumes
under the other; the choice is recorded; bad choices are one line."""

import json
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnet_jax import checkpoint, config_file, data as data_lib, metrics, optim, train
from mnet_jax.workdir import model_from_config
from mnet_jax.errors import ConfigError
from mnet_jax.ops import resolve_kernels


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny Fashion-MNIST run of 4 steps with checkpoints at 2 and 4, as flags and as the same config in this process.
FLAGS = ["--config", "mnet_jax/configs/fashion_mnist.py:runlocal", "--config.model.stem_stride=2",
         "--config.num_steps=4", "--config.checkpoint_every_steps=2", "--config.log_every_steps=1",
         "--config.data.max_eval_examples=64", "--config.wandb.mode=disabled"]


def tiny_config(kernels, dtype="float32"):
  overrides = [tuple(flag[len("--config."):].split("=")) for flag in FLAGS[2:]]
  config = config_file.load(os.path.join(REPO, FLAGS[1]), overrides)
  config.model.kernels, config.model.dtype = kernels, dtype
  return config


def train_lines(workdir):
  return [m for m in metrics.read_metrics(workdir) if "loss" in m and "split" not in m]


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
  """An uninterrupted float32 run on the cpu kernels: its workdir."""
  workdir = tmp_path_factory.mktemp("cpu_run")
  train.train_and_evaluate(tiny_config("cpu"), str(workdir))
  return workdir


def loss_logits_and_grads(config, variables, batch):
  """The training loss, logits and parameter gradients of `config`'s model at `variables` on one batch."""
  model = model_from_config(config, 10)

  def loss_fn(params):
    logits, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, batch["images"],
                            train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)})
    return optim.cross_entropy(logits, batch["labels"], 10, 0.0).mean(), logits

  (loss, logits), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])
  return float(loss), np.asarray(logits, np.float32), [np.asarray(g, np.float32) for g in jax.tree.leaves(grads)]


@pytest.mark.slow
def test_cpu_and_portable_gradients_agree_leaf_by_leaf_after_a_few_steps(cpu_run):
  config = tiny_config("cpu")
  model = model_from_config(config, 10)
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  step, variables = checkpoint.restore_variables(str(cpu_run), abstract)
  assert step == 4
  data = data_lib.build(config)
  batch = data_lib.on_device(next(iter(data.train_batches(4))), config.resolution)
  results = {(kernels, dtype): loss_logits_and_grads(tiny_config(kernels, dtype), variables, batch)
             for kernels in ("cpu", "portable") for dtype in ("float32", "bfloat16")}
  loss, logits, grads = results["cpu", "float32"]
  # float32: every gradient leaf within 1e-4 of its largest value: the per-op tests' 1e-5 (tests/test_depthwise.py,
  # test_conv.py, test_batchnorm.py) through 28 conv + BatchNorm layers; measured 4.9e-5 at worst.
  portable_loss, _, portable_grads = results["portable", "float32"]
  assert portable_loss == pytest.approx(loss, rel=2e-5)
  names = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(variables["params"])]
  for name, actual, expected in zip(names, portable_grads, grads, strict=True):
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4 * np.abs(expected).max(), err_msg=name)
  # bfloat16 rounds every layer's output to 8 significant bits and the last BatchNorms (32 values at 1x1) amplify
  # it: gradients leaf by leaf are not comparable. The model must still compute float32's function: logits
  # correlated with float32's (measured 0.92 and 0.93) and as spread (a collapsed model's are constant), the loss
  # within 8 % (measured 3.2 % and 1.9 %) and the whole gradient pointing the same way (cosine below).
  flat = np.concatenate([g.ravel() for g in grads])
  for kernels in ("cpu", "portable"):
    low_loss, low_logits, low_grads = results[kernels, "bfloat16"]
    low_flat = np.concatenate([g.ravel() for g in low_grads])
    cosine = np.dot(low_flat, flat) / np.linalg.norm(low_flat) / np.linalg.norm(flat)
    assert low_loss == pytest.approx(loss, rel=0.08)
    assert np.corrcoef(low_logits.ravel(), logits.ravel())[0, 1] > 0.8
    assert 0.7 < low_logits.std(0).mean() / logits.std(0).mean() < 1.4
    assert cosine > 0.2  # measured 0.41 and 0.44; unrelated directions in 10^5 dimensions give about 0


@pytest.mark.slow
def test_a_run_checkpointed_under_one_kernel_set_resumes_under_the_other(tmp_path, cpu_run, capsys):
  killed = tmp_path / "killed"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu",
         train.KILL_AFTER_CHECKPOINT: "2"}
  attempt = subprocess.run([sys.executable, "-m", "mnet_jax.main", *FLAGS, "--config.model.kernels=cpu", "--workdir",
                            str(killed)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert attempt.returncode == -signal.SIGKILL, attempt.stderr[-3000:]
  final = train.train_and_evaluate(tiny_config("portable"), str(killed))
  assert "resuming from checkpoint step 2" in capsys.readouterr().out
  with open(killed / "config.json") as f:
    assert json.load(f)["model"]["kernels"] == final["kernels"] == "portable"
  whole, resumed = train_lines(cpu_run), train_lines(killed)
  assert [m["loss"] for m in resumed[:2]] == [m["loss"] for m in whole[:2]]  # the same kernels until the kill
  # Step 3 starts from the restored weights, optimizer state and batch under the other set: float rounding apart
  # (measured 2e-6 in the loss, 3e-5 in the gradient's norm, 2e-5 in the update's). Step 4 is not compared
  # tightly: this tiny net turns such differences into percent-level ones within a step or two (the gradient's
  # norm 3.8 % apart); the test loss after it was measured 1e-3 apart.
  for key in ("loss", "l2_grads", "l2_updates", "l2_params"):
    assert resumed[2][key] == pytest.approx(whole[2][key], rel=1e-4), key
  assert final["test_loss"] == pytest.approx(metrics.final_metrics(cpu_run)["test_loss"], rel=5e-3)


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
