"""The benchmark CLI: bad settings give one line; a tiny real run prints the promised JSON keys."""

import json
import subprocess
import sys

import pytest

KEYS = {"alpha", "resolution", "batch", "dtype", "jax_train_img_s", "torch_train_img_s", "train_ratio",
        "jax_infer_img_s", "torch_infer_img_s", "infer_ratio"}


def run_bench(*args):
  return subprocess.run([sys.executable, "-m", "mnet_jax.bench", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("setting,message", [
    ("1.0,32,128", "--setting '1.0,32,128' is not allowed: expected alpha,resolution,batch,dtype"),
    ("1.0,16,128,float32", "resolution=16 is not allowed: it must be an integer >= 32"),
    ("1.0,32,0,float32", "--setting '1.0,32,0,float32' is not allowed: batch must be >= 1"),
    ("1.0,32,8,float16", "dtype must be one of float32, bfloat16"),
    ("wide,32,8,float32", "alpha must be a number"),
])
def test_bad_setting_is_one_line(setting, message):
  result = run_bench("--setting", setting)
  assert result.returncode != 0
  assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_tiny_run_prints_json_lines():
  result = run_bench("--setting", "0.25,32,8,float32", "--repeats", "1", "--no-pipeline", "--json")
  assert result.returncode == 0, result.stderr
  (line,) = result.stdout.strip().splitlines()
  row = json.loads(line)
  assert KEYS <= set(row)
  assert (row["alpha"], row["resolution"], row["batch"], row["dtype"]) == (0.25, 32, 8, "float32")
  assert all(row[k] > 0 for k in KEYS if k.endswith(("img_s", "ratio")))
  assert row["train_ratio"] == pytest.approx(row["jax_train_img_s"] / row["torch_train_img_s"], rel=1e-2)


def test_bad_kernel_sizes_is_one_line():
  result = run_bench("--kernel-sizes", "3,4")
  assert result.returncode != 0
  assert "kernel_sizes=(3, 4) has kernel size 4" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kernel_sizes, split", [((3,), "equal"), ((7,), "equal"), ((3, 5, 7, 9), "exponential")])
def test_torch_peer_is_built_from_architecture(kernel_sizes, split):
  """The peer has the module's layers: its parameters (conv and FC weights, BatchNorm scale and bias, FC bias)
  number as many as the Flax module's, and a MixConv layer is one depthwise conv per group."""
  import torch
  from mnet_jax.bench import torch_model
  from mnet_jax.count import count
  from mnet_jax.models import architecture
  model = torch_model(architecture(0.5, num_classes=10, stem_stride=1, kernel_sizes=kernel_sizes,
                                   kernel_split=split))
  totals = count(0.5, 32, num_classes=10, stem_stride=1, kernel_sizes=kernel_sizes, kernel_split=split)
  assert sum(p.numel() for p in model.parameters()) == totals["trainable_params"]
  depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
  assert len(depthwise) == 13 * len(kernel_sizes)
  assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
