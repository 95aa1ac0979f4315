"""Training end to end on tiny models: in-process, in subprocesses (2 simulated devices, SIGKILL + resume),
on mock ImageNet, and the recipes' arithmetic."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from mnet_jax.configs import fashion_mnist, imagenet
from mnet_jax import checkpoint, config_file, evaluate, metrics, optim, train, workdir
from mnet_jax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINAL_KEYS = {"final", "step", "test_top1", "test_top5", "mult_adds", "params", "trainable_params", "train_seconds",
              "images_per_second", "alpha", "resolution", "variant", "kernels", "num_devices", "num_processes"}
# A tiny Fashion-MNIST run: alpha 0.25, 32 px, stride-2 stem, batch 32, 1024 training images.
TINY_FLAGS = ["--config", "mnet_jax/configs/fashion_mnist.py:runlocal", "--config.model.stem_stride=2",
              "--config.log_every_steps=1"]


def tiny_config(**overrides):
  config = fashion_mnist.get_config("runlocal")
  config.model.stem_stride = 2
  config.wandb.mode = "disabled"
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def run_main(workdir, *flags, devices=1, check=True, env=None):
  env = {**(env or os.environ), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-m", "mnet_jax.main", *TINY_FLAGS, "--workdir", str(workdir), *flags],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  if check:
    assert result.returncode == 0, result.stderr[-3000:]
  return result


def train_lines(workdir):
  return [m for m in metrics.read_metrics(workdir) if "loss" in m and "split" not in m]


@pytest.mark.slow
def test_train_and_evaluate_writes_config_metrics_and_checkpoints(tmp_path):
  config = tiny_config(num_steps=10, checkpoint_every_steps=5, log_every_steps=1)
  final = train.train_and_evaluate(config, str(tmp_path))
  assert FINAL_KEYS <= set(final)
  assert final["final"] is True and final["step"] == 10 and final["num_examples"] == 256
  assert 0.0 <= final["test_top1"] <= final["test_top5"] <= 1.0
  assert (final["alpha"], final["resolution"], final["variant"]) == (0.25, 32, "standard")
  assert final["kernels"] == "cpu"  # kernels='auto' in a single-device CPU process
  assert (final["num_devices"], final["num_processes"]) == (1, 1)
  assert final["mult_adds"] == 834688  # the counter's figure for this model (stride-2 stem, 10 classes)
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["alpha"] == 0.25
  lines = train_lines(tmp_path)
  assert [m["step"] for m in lines] == list(range(1, 11))
  for m in lines:
    assert {"loss", "top1", "learning_rate", "l2_grads", "l2_params", "l2_updates", "images_per_second"} <= set(m)
    assert np.isfinite([m["l2_grads"], m["l2_params"], m["l2_updates"]]).all()  # computed on every logged step
  assert lines[0]["loss"] == pytest.approx(np.log(10), abs=0.5)  # a fresh 10-class classifier
  assert sorted(int(p) for p in os.listdir(tmp_path / "checkpoints")) == [5, 10]
  # A finished run is not trained again: the same final line comes back at once.
  assert train.train_and_evaluate(config, str(tmp_path)) == final
  # Evaluating the last checkpoint alone gives the same figures and appends a final line.
  again = evaluate.evaluate_workdir(str(tmp_path))
  for key in ("test_top1", "test_top5", "test_loss", "mult_adds", "params"):
    assert again[key] == final[key]
  assert len([m for m in metrics.read_metrics(tmp_path) if m.get("final")]) == 2


def test_a_different_config_in_the_same_workdir_is_refused(tmp_path):
  workdir.write_config(tiny_config(), str(tmp_path))
  (tmp_path / "metrics.jsonl").write_text("")  # a run has started
  with pytest.raises(ConfigError, match="different config.*alpha"):
    workdir.write_config(tiny_config(alpha=0.5), str(tmp_path))


def test_a_run_from_before_the_added_fields_resumes_with_their_defaults(tmp_path):
  """A config.json written before model.name, the V1 ablation fields and distill existed holds the same run as one
  with their defaults; one whose value differs from the default is still refused."""
  workdir.write_config(tiny_config(), str(tmp_path))
  fields = json.loads((tmp_path / "config.json").read_text())
  for section, added in workdir.ADDED_FIELDS.items():
    for key in added:
      fields[section].pop(key)
  fields.pop("distill")
  (tmp_path / "config.json").write_text(json.dumps(fields))
  (tmp_path / "metrics.jsonl").write_text("")  # a run has started
  workdir.write_config(tiny_config(), str(tmp_path))
  assert workdir.load_config(str(tmp_path)).model.name == "mobilenet_v1"
  (tmp_path / "config.json").write_text(json.dumps(fields))
  changed = tiny_config()
  changed.model.pointwise_groups = 2
  with pytest.raises(ConfigError, match="different config.*model"):
    workdir.write_config(changed, str(tmp_path))


def test_a_workdir_without_a_run_takes_a_new_config(tmp_path):
  """A run refused before it started (no checkpoint, no metrics) does not hold its workdir."""
  workdir.write_config(tiny_config(), str(tmp_path))
  workdir.write_config(tiny_config(alpha=0.5), str(tmp_path))
  assert workdir.load_config(str(tmp_path)).alpha == 0.5


def test_a_refused_config_writes_nothing(tmp_path):
  with pytest.raises(ConfigError, match=r"alpha=0(\.0)? is not allowed"):
    train.train_and_evaluate(tiny_config(alpha=0), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_the_recipe_is_a_config_argument_that_sets_the_optimizer():
  paper = config_file.load("mnet_jax/configs/imagenet.py")
  modern = config_file.load("mnet_jax/configs/imagenet.py:recipe=modern")
  assert (paper.optim.optimizer, modern.optim.optimizer) == ("rmsprop", "sgd_nesterov")
  assert modern.optim.to_dict() == optim.recipe_config("modern").to_dict()
  with pytest.raises(ConfigError, match="config field 'recipe' does not exist"):
    config_file.load("mnet_jax/configs/imagenet.py", [("recipe", "modern")])


def test_chrono_counts_neither_the_first_step_nor_pauses(monkeypatch):
  clock = iter([0.0, 10.0, 11.0, 12.0, 13.0, 20.0, 21.0, 21.0, 22.0])
  monkeypatch.setattr(train, "time", types.SimpleNamespace(time=lambda: next(clock)))  # train's clock only
  chrono = train.Chrono(seconds_before=100.0)  # t=0
  chrono.tick(8)  # t=10: the first step (compilation) starts the count
  chrono.tick(8)  # t=11
  assert chrono.interval_rate() == 8.0
  with chrono.paused():  # t=12 to t=13: an evaluation
    pass
  chrono.tick(8)  # t=20: 7 s of stepping since the pause
  assert chrono.interval_rate() == 16 / 9
  chrono.new_interval()
  assert chrono.interval_rate() is None
  assert chrono.rate() == 16 / 10  # t=21
  assert chrono.train_seconds() == 121.0  # wall time, pauses included, after 100 s of earlier attempts


@pytest.mark.slow
def test_corrupted_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
  config = tiny_config(num_steps=4, checkpoint_every_steps=2)
  train.train_and_evaluate(config, str(tmp_path))
  for path in glob.glob(str(tmp_path / "checkpoints" / "4" / "variables" / "**" / "*"), recursive=True):
    if os.path.isfile(path):
      with open(path, "wb") as f:
        f.write(b"garbage")
  model = train.model_from_config(config, 10)
  abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
  with pytest.warns(UserWarning, match="checkpoint step 4 .* unreadable"):
    step, variables = checkpoint.restore_variables(str(tmp_path), abstract)
  assert step == 2
  assert jax.tree.structure(variables) == jax.tree.structure(abstract)


@pytest.mark.slow
def test_nan_loss_stops_with_one_line_naming_the_step(tmp_path):
  config = tiny_config(num_steps=6)
  config.optim.base_learning_rate = 1e30
  config.optim.warmup_epochs = 0.0
  with pytest.raises(train.TrainingDiverged, match=r"^the training loss is (nan|inf|-inf) at step \d+; stopping"):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.slow
def test_two_devices_follow_the_one_device_loss_curve(tmp_path):
  # Only the first two steps: this tiny net is chaotic. Float noise in the gradients (conv weights before
  # BatchNorm sum x * dy over mostly -1 backgrounds, which cancels) grows to percent-level differences in the
  # loss within a few steps, on any two reduction orders (docs/training.md): step 3's loss was measured 1e-6 from
  # the one-device run's on an AVX-512 Xeon and 0.7 % on an AMD EPYC (AVX2). Step 2's loss already depends on the
  # first update, so on the gradient summed over both devices. Both runs use the portable kernels (what several
  # devices get), so the orders differ by the split of the batch alone.
  flags = ["--config.num_steps=3", "--config.wandb.mode=disabled"]
  run_main(tmp_path / "one", *flags, "--config.model.kernels=portable", devices=1)
  run_main(tmp_path / "two", *flags, devices=2)
  one, two = train_lines(tmp_path / "one"), train_lines(tmp_path / "two")
  assert len(one) == len(two) == 3
  final_one, final_two = metrics.final_metrics(tmp_path / "one"), metrics.final_metrics(tmp_path / "two")
  # The XLA flag took effect: two devices in one process, so `auto` chose the portable kernels.
  assert (final_two["num_devices"], final_two["num_processes"], final_two["kernels"]) == (2, 1, "portable")
  assert (final_one["num_devices"], final_one["kernels"]) == (1, "portable")
  np.testing.assert_allclose([m["loss"] for m in two[:2]], [m["loss"] for m in one[:2]], rtol=1e-5)
  np.testing.assert_allclose(two[0]["l2_grads"], one[0]["l2_grads"], rtol=1e-5)  # global BatchNorm statistics
  np.testing.assert_allclose([m["l2_params"] for m in two[:2]], [m["l2_params"] for m in one[:2]], rtol=5e-5)
  assert final_two["test_loss"] == pytest.approx(final_one["test_loss"], rel=1e-3)


@pytest.mark.slow
def test_batch_size_not_divisible_by_devices_is_one_line(tmp_path):
  result = run_main(tmp_path, "--config.batch_size=33", "--config.wandb.mode=disabled", devices=2, check=False)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      "error: batch_size=33 is not divisible by the number of devices (2); use a multiple of 2")


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_final_metrics(tmp_path):
  """The modern recipe's every part (AdamW, label smoothing, EMA weights) resumes bit for bit, and evaluating the
  workdir gives the EMA metrics of training's final line."""
  flags = ["--config.num_steps=16", "--config.checkpoint_every_steps=4", "--config.optim.optimizer=adamw",
           "--config.optim.base_learning_rate=0.004", "--config.optim.label_smoothing=0.1",
           "--config.optim.ema_decay=0.9", "--config.wandb.mode=auto"]
  # No credentials: 'auto' logs offline (and asks wandb whether it has any, which must print no warning).
  env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
  env.update(NETRC=str(tmp_path / "no-netrc"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"))
  run_main(tmp_path / "whole", *flags, env=env)
  killed = tmp_path / "killed"
  # Killed by itself once checkpoint 8 is committed: the test-only hook of mnet_jax.train.
  attempt = run_main(killed, *flags, env={**env, train.KILL_AFTER_CHECKPOINT: "8"}, check=False)
  assert attempt.returncode == -signal.SIGKILL, attempt.stderr[-3000:]
  assert metrics.final_metrics(killed) is None and sorted(os.listdir(killed / "checkpoints")) == ["4", "8"]
  resumed = run_main(killed, *flags, env=env)
  assert "resuming from checkpoint step 8" in resumed.stdout
  assert "deprecated" not in resumed.stderr.lower(), resumed.stderr[-3000:]
  whole, again = metrics.final_metrics(tmp_path / "whole"), metrics.final_metrics(killed)
  assert {"test_ema_top1", "test_ema_top5", "test_ema_loss"} <= set(whole)
  assert again["test_ema_top1"] != again["test_top1"] or again["test_ema_loss"] != again["test_loss"]
  timing = ("train_seconds", "images_per_second")
  # Bitwise: same data order, same RNG, same compiled step, the optimizer and EMA state restored.
  assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in whole.items() if k not in timing}
  strip = lambda lines: [{k: v for k, v in m.items() if k != "images_per_second"} for m in lines]  # noqa: E731
  assert strip(train_lines(killed)) == strip(train_lines(tmp_path / "whole"))
  # Evaluating the workdir alone restores the EMA weights too and gets training's figures.
  alone = evaluate.evaluate_workdir(str(killed))
  for key in ("test_ema_top1", "test_ema_top5", "test_ema_loss", "test_top1", "test_loss"):
    assert alone[key] == again[key], key
  # Both attempts logged to one offline wandb run (same id), which `wandb sync` can upload.
  runs = glob.glob(str(killed / "wandb" / "offline-run-*"))
  assert len(runs) == 2 and len({r.rsplit("-", 1)[1] for r in runs}) == 1
  assert all(glob.glob(os.path.join(r, "run-*.wandb")) for r in runs)


@pytest.mark.slow
def test_imagenet_config_runs_end_to_end_on_mock_data(tmp_path):
  config = imagenet.get_config("runlocal")
  config.wandb.mode = "disabled"
  # mock_data patches the file system for every thread while a dataset is being built: a second epoch's dataset,
  # built by the prefetch thread during a checkpoint save, made orbax write into the mock (1 run in 3 failed).
  # 80 examples (runlocal reads 64): 8 steps an epoch, so the 3 steps and 2 prefetched batches build only one.
  with tfds.testing.mock_data(num_examples=80):
    final = train.train_and_evaluate(config, str(tmp_path))
  assert final["step"] == 3 and final["split"] == "validation" and final["num_examples"] == 20
  assert final["mult_adds"] == 1088128  # alpha 0.25, 32 px, stride-2 stem, 1000 classes
  lines = train_lines(tmp_path)
  assert [m["step"] for m in lines] == [1, 2, 3]
  assert all(np.isfinite(m["loss"]) for m in lines)
  evaluations = [m for m in metrics.read_metrics(tmp_path) if m.get("split") == "validation" and not m.get("final")]
  assert [m["step"] for m in evaluations] == [2]


def test_paper_recipe_is_tf_rmsprop_with_l2_on_kernels_but_not_depthwise():
  optim_config = optim.recipe_config("paper")
  tx, schedule = optim.build(optim_config, batch_size=64, steps_per_epoch=100, total_steps=1000)
  lr = 0.01 * 64 / 32
  assert float(schedule(0)) == pytest.approx(lr)
  assert float(schedule(199)) == pytest.approx(lr)
  assert float(schedule(200)) == pytest.approx(lr * 0.94)  # x0.94 every 2 epochs
  params = {"block1_dw": {"kernel": jnp.full((3, 3, 1, 2), 2.0), "bn": {"scale": jnp.ones(2), "bias": jnp.ones(2)}},
            "block1_pw": {"kernel": jnp.full((1, 1, 2, 2), 2.0)}, "classifier": {"kernel": jnp.full((2, 3), 2.0),
                                                                               "bias": jnp.ones(3)}}
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  wd = 4e-5

  def expected(g):  # TF RMSProp: ms starts at 1, eps inside the sqrt; momentum buffer starts at 0
    ms = 0.9 * 1.0 + 0.1 * g * g
    return -lr * g / np.sqrt(ms + 1.0)

  np.testing.assert_allclose(updates["block1_dw"]["kernel"], expected(0.5), rtol=1e-6)
  np.testing.assert_allclose(updates["block1_dw"]["bn"]["scale"], expected(0.5), rtol=1e-6)
  np.testing.assert_allclose(updates["classifier"]["bias"], expected(0.5), rtol=1e-6)
  np.testing.assert_allclose(updates["block1_pw"]["kernel"], expected(0.5 + wd * 2.0), rtol=1e-6)
  np.testing.assert_allclose(updates["classifier"]["kernel"], expected(0.5 + wd * 2.0), rtol=1e-6)


def test_modern_recipe_warms_up_then_decays_to_zero_and_scales_with_batch_size():
  optim_config = optim.recipe_config("modern")
  _, schedule = optim.build(optim_config, batch_size=512, steps_per_epoch=10, total_steps=100)
  peak = 0.1 * 512 / 256
  assert float(schedule(0)) == 0.0
  assert float(schedule(50)) == pytest.approx(peak)  # 5 warmup epochs = 50 steps
  assert float(schedule(100)) == pytest.approx(0.0, abs=1e-7)
  with pytest.raises(ConfigError, match="optim.optimizer='lamb' is unknown"):
    optim_config.optimizer = "lamb"
    optim.build(optim_config, 512, 10, 100)


@pytest.mark.slow
def test_init_from_starts_a_new_run_from_another_workdirs_weights(tmp_path):
  """Fine-tuning: `config.init_from` loads another workdir's latest variables (a training run, or converted
  Keras weights), with a fresh optimizer and step 0."""
  source = tmp_path / "source"
  train.train_and_evaluate(tiny_config(num_steps=4, checkpoint_every_steps=4), str(source))
  config = tiny_config(num_steps=1, init_from=str(source), checkpoint_every_steps=1)
  config.optim.base_learning_rate = 1e-12
  config.optim.weight_decay = 0.0
  train.train_and_evaluate(config, str(tmp_path / "finetune"))
  abstract = jax.eval_shape(train.model_from_config(config, 10).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  _, source_variables = checkpoint.restore_variables(str(source), abstract)
  step, tuned = checkpoint.restore_variables(str(tmp_path / "finetune"), abstract)
  assert step == 1
  for a, b in zip(jax.tree.leaves(source_variables["params"]), jax.tree.leaves(tuned["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)  # learning rate ~0: the source's weights
  with pytest.raises(ConfigError, match=r"init_from='.*missing' holds no checkpoint readable as this model"):
    train.train_and_evaluate(tiny_config(num_steps=1, init_from=str(tmp_path / "missing")), str(tmp_path / "x"))


COMPILATION_CACHE = """
import jax, jax.numpy as jnp
from mnet_jax import process
process.use_persistent_compilation_cache()
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.jit(lambda x: x * 2)(jnp.ones(3)).block_until_ready()
print(jax.config.jax_compilation_cache_dir)
"""


@pytest.mark.slow
def test_compiled_programs_are_kept_in_the_project_cache_unless_jax_has_one(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  ours = subprocess.run([sys.executable, "-c", COMPILATION_CACHE], capture_output=True, text=True,
                        env={**env, "MNET_JAX_CACHE": str(tmp_path / "ours")})
  assert ours.stdout.strip() == str(tmp_path / "ours" / "xla"), ours.stderr
  assert os.listdir(tmp_path / "ours" / "xla")  # the program compiled above
  theirs = subprocess.run([sys.executable, "-c", COMPILATION_CACHE], capture_output=True, text=True,
                          env={**env, "MNET_JAX_CACHE": str(tmp_path / "ours2"),
                               "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "theirs")})
  assert theirs.stdout.strip() == str(tmp_path / "theirs") and os.listdir(tmp_path / "theirs"), theirs.stderr
  assert not (tmp_path / "ours2").exists()


def test_wandb_credentials_are_found_without_a_warning_or_the_network(tmp_path):
  """wandb.mode='auto' goes online only with credentials; looking for them prints nothing (wandb deprecated the
  `wandb.api.api_key` lookup with a warning on every run) and contacts no server: wandb's host is a local socket
  here that counts connections (`wandb.login` would ask it for the user name)."""
  code = "from mnet_jax import metrics\nprint(metrics.has_wandb_key())"
  env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
  with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    env.update(NETRC=str(tmp_path / "no-netrc"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
               WANDB_BASE_URL=f"http://127.0.0.1:{server.getsockname()[1]}")
    for key, expected in ((None, "False"), ("0123456789abcdef0123456789abcdef01234567", "True")):
      result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                              env={**env, "WANDB_API_KEY": key} if key else env)
      assert (result.stdout.strip(), result.stderr.strip()) == (expected, ""), result.stderr
    with pytest.raises(BlockingIOError):
      server.accept()  # nobody connected
