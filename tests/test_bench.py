"""The benchmark CLI: bad settings give one line; a tiny real run prints the promised JSON keys; the step it times
is the trainer's; the PyTorch twin has the model's layers; the scripts in benchmarks/ run as the docs give them."""

import functools
import json
import os
import subprocess
import sys

import pytest

KEYS = {"alpha", "resolution", "batch", "dtype", "jax_train_img_s", "torch_train_img_s", "train_ratio",
        "jax_infer_img_s", "torch_infer_img_s", "infer_ratio", "commit"}


def run_bench(*args):
  return subprocess.run([sys.executable, "-m", "mnet_jax.bench", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("setting,message", [
    ("1.0,32,128", "--setting '1.0,32,128' is not allowed: expected alpha,resolution,batch,dtype"),
    ("1.0,16,128,float32", "resolution=16 is not allowed: it must be an integer >= 32"),
    ("1.0,32,0,float32", "--setting '1.0,32,0,float32' is not allowed: batch must be >= 1"),
    ("1.0,32,8,float16", "dtype must be one of float32, bfloat16"),
    ("wide,32,8,float32", "alpha must be a number"),
])
@pytest.mark.slow
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


def test_commit_names_the_checkout(tmp_path, monkeypatch):
  from mnet_jax.machine import code_commit
  monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
  repo = tmp_path / "repo"
  repo.mkdir()
  assert code_commit(repo) == "unknown"
  git = lambda *args: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                                     check=True, capture_output=True, text=True).stdout.strip()
  git("init", "-q")
  (repo / "a.py").write_text("x = 1\n")
  git("add", "a.py")
  git("commit", "-q", "-m", "a")
  head = git("rev-parse", "--short", "HEAD")
  assert code_commit(repo) == head
  (repo / "a.py").write_text("x = 2\n")
  assert code_commit(repo) == head + "+dirty"


@pytest.mark.slow
def test_gpu_check_runs_in_its_dry_form_on_the_cpu(tmp_path):
  """benchmarks/gpu_check.sh --dry: the GPU check's steps at tiny sizes; every measurement in $OUT, and a table."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = tmp_path / "check.jsonl"
  result = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry"], cwd=repo, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHON": sys.executable, "OUT": str(out)})
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  steps = [r for r in rows if r.get("peer") == "none" and "alpha" in r]
  assert [(r["alpha"], r["resolution"], r["batch"], r["dtype"]) for r in steps] == [
      (0.25, 64, 8, "bfloat16"), (0.25, 32, 8, "bfloat16")]
  assert all(r["torch_train_img_s"] is None and r["jax_train_img_s"] > 0 for r in steps)
  assert {(r["pipeline"], r["resolution"]) for r in rows if "pipeline" in r} == {
      (p, s) for p in ("fashion_mnist", "imagenet_inception_crop") for s in (64, 32)}
  (peer,) = [r for r in rows if r.get("peer") == "twin"]
  assert peer["torch_train_img_s"] > 0 and peer["torch_mode"] == "eager"
  table = result.stdout.splitlines()
  assert table[1].split()[:3] == ["alpha", "res", "step"] and len(table) == 5
  assert table[2].split()[:2] == ["0.25", "64"] and table[2].count("|") == 2
  assert table[4].startswith("peer twin (eager) at 0.25-32 b8 bfloat16: train jax")


@pytest.mark.slow
def test_bench_step_is_the_trainers_step():
  """The step the bench times is train.train_step between log lines: one jitted step gives the trainer's loss,
  metrics and state, the global norms left out; on a logged step they are the norms of the step's trees."""
  import functools

  import jax
  import numpy as np
  import optax
  from mnet_jax import train
  from mnet_jax.bench import jax_runner, model as model_lib
  model = model_lib.mobilenet_v1(0.25, num_classes=10, stem_stride=1, kernels="portable")
  tx = optax.sgd(jax_runner.LEARNING_RATE, jax_runner.MOMENTUM)
  batch = jax_runner.random_batch(32, 4, model.num_classes)
  state, _ = jax_runner.initial_state(model, tx, jax.devices("cpu")[0])
  trainers_step = jax.jit(functools.partial(
      train.train_step, model=model.module, tx=tx, learning_rate=optax.constant_schedule(jax_runner.LEARNING_RATE),
      num_classes=10, label_smoothing=0.0, ema_decay=0.0))  # as the trainer runs it: jitted, the norms on
  old_params = jax.device_get(state.params)
  expected_state, expected = trainers_step(state, batch)
  new_params = jax.device_get(expected_state.params)
  norm = lambda leaves: np.sqrt(sum(np.sum(np.square(x, dtype=np.float64)) for x in leaves))  # noqa: E731
  np.testing.assert_allclose(expected["l2_params"], norm(jax.tree.leaves(new_params)), rtol=1e-5)
  np.testing.assert_allclose(expected["l2_updates"], norm(
      new - old for new, old in zip(jax.tree.leaves(new_params), jax.tree.leaves(old_params))), rtol=1e-4)
  new_state, metrics = jax_runner.jitted_step(model, 32, tx)(state, batch)
  assert set(metrics) == {"loss", "top1", "learning_rate", *train.NORMS}
  assert np.isnan([metrics[name] for name in train.NORMS]).all()
  for name in set(metrics) - set(train.NORMS):
    np.testing.assert_allclose(metrics[name], expected[name], rtol=1e-4, err_msg=name)
  assert int(new_state.step) == 1
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), jax.device_get(new_state.params),
               new_params)


@pytest.mark.slow
def test_bad_kernel_sizes_is_one_line():
  result = run_bench("--kernel-sizes", "3,4")
  assert result.returncode != 0
  assert "kernel_sizes=(3, 4) has kernel size 4" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kernel_sizes, split", [((3,), "equal"), ((7,), "equal"), ((3, 5, 7, 9), "exponential")])
def test_torch_peer_is_built_from_architecture(kernel_sizes, split):
  """The peer has the module's layers: its parameters (conv and FC weights, BatchNorm scale and bias, FC bias)
  number as many as the Flax module's, and a MixConv layer is one depthwise conv per group."""
  import torch
  from mnet_jax.bench import model as model_lib
  from mnet_jax.bench.torch_peer import torch_model
  from mnet_jax.count import count
  model = torch_model(model_lib.mobilenet_v1(0.5, num_classes=10, stem_stride=1, kernel_sizes=kernel_sizes,
                                             kernel_split=split).layers)
  totals = count(0.5, 32, num_classes=10, stem_stride=1, kernel_sizes=kernel_sizes, kernel_split=split)
  assert sum(p.numel() for p in model.parameters()) == totals["trainable_params"]
  depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
  assert len(depthwise) == 13 * len(kernel_sizes)
  assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("script,args,first_line", [
    ("jpeg_decode_floor.py", ["--images", "4", "--rounds", "1"], "# "),
    ("kernel_ab.py", ["--setting", "0.25,32,2,2", "--variant", "pointwise=dot", "--rounds", "1"], "machine="),
])
@pytest.mark.slow
def test_benchmark_script_runs_as_documented(script, args, first_line):
  """`python benchmarks/SCRIPT` from the repository root, as the docs give it, at a tiny size: it imports what it
  needs without the repository on the path and prints its table."""
  import os
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=repo, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[0].startswith(first_line) and sum("|" in line for line in lines) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("name,options", [
    ("mobilenet_v1", {"kernel_sizes": (3, 5)}), ("mobilenet_v2", {}), ("mobilenet_v3_large", {}),
    ("mobilenet_v3_small", {}), ("mobilenet_v3_small", {"minimalistic": True})])
def test_torch_twin_gives_the_jax_models_logits(name, options):
  """Given the Flax model's weights and BatchNorm statistics, the PyTorch twin built from its spec gives the same
  logits at inference (TF 'SAME' padding on stride-2 layers, residuals, squeeze-excite, hard-swish, biased fcs);
  the statistics are made non-trivial by one training-mode forward first."""
  import jax
  import numpy as np
  import torch
  from mnet_jax.bench import model as model_lib
  from mnet_jax.bench.torch_peer import copy_weights, torch_model
  model = model_lib.build(name, 0.5, num_classes=7, kernels="portable", **options)
  images = np.random.default_rng(0).uniform(-1, 1, (2, 40, 40, 3)).astype(np.float32)
  variables = jax.jit(functools.partial(model.module.init, train=False))(jax.random.PRNGKey(1), images)
  _, updated = model.module.apply(variables, images, train=True, mutable=["batch_stats"],
                                  rngs={"dropout": jax.random.PRNGKey(2)})
  variables = {"params": variables["params"], "batch_stats": updated["batch_stats"]}
  twin = torch_model(model.layers, **model.twin_options()).eval()
  copy_weights(twin, variables, model.layers)
  assert sum(p.numel() for p in twin.parameters()) == sum(x.size for x in jax.tree.leaves(variables["params"]))
  expected = np.asarray(model.module.apply(variables, images, train=False))
  with torch.no_grad():
    got = twin(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_tiny_run_of_another_family_names_it():
  result = run_bench("--model", "mobilenet_v3_small", "--setting", "0.5,32,4,float32", "--stem-stride", "1",
                     "--repeats", "1", "--no-pipeline", "--json")
  assert result.returncode == 0, result.stderr
  row = json.loads(result.stdout.strip().splitlines()[-1])
  assert row["model"] == "mobilenet_v3_small" and row["jax_train_img_s"] > 0 and row["torch_train_img_s"] > 0


@pytest.mark.slow
def test_unknown_model_is_one_line():
  result = run_bench("--model", "mobilenet_v4")
  assert result.returncode != 0
  assert "model name='mobilenet_v4' is unknown; allowed: mobilenet_v1, mobilenet_v2" in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1
