"""`python -m mnet_jax.prepare` on tfds mock imagenet2012: resumable after SIGKILL with the same manifest, read by
both prepared modes in training, bad input refused in one line with nothing written."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mnet_jax.configs import imagenet
from mnet_jax import data, metrics, prepare, train
from mnet_jax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_EXAMPLES = 200
# The command line, with tfds's mock imagenet2012 in place of the real one.
MOCK_PREPARE = f"""
import sys
import tensorflow_datasets as tfds
from mnet_jax import prepare
with tfds.testing.mock_data(num_examples={NUM_EXAMPLES}):
  prepare.main(sys.argv[1:])
"""
# The command line on a machine with no network: no host name resolves (so no dataset host is contacted).
OFFLINE_PREPARE = """
import socket
import sys
def no_network(*args, **kwargs):
  raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
socket.getaddrinfo = no_network
from mnet_jax import prepare
prepare.main(sys.argv[1:])
"""
FLAGS = ["--config", "mnet_jax/configs/imagenet.py:runlocal", "--shard_size", "4", "--size", "40"]


def run_prepare(out, *flags, env=None):
  return subprocess.Popen([sys.executable, "-c", MOCK_PREPARE, *FLAGS, "--out", str(out), *flags], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_killed_halfway_and_run_again_gives_the_manifest_of_an_uninterrupted_run(tmp_path):
  whole = run_prepare(tmp_path / "whole")
  assert whole.wait(timeout=300) == 0, whole.stderr.read()[-2000:]
  assert "prepared imagenet2012 (train 200, validation 200 images) at shorter side 40" in whole.stdout.read()
  # Killed by itself once validation's shard 9 (60 of 100) is done: the test-only hook of mnet_jax.prepare.
  killed = run_prepare(tmp_path / "killed", env={**os.environ, prepare.KILL_AFTER_SHARD: "validation-00009"})
  assert killed.wait(timeout=300) == -signal.SIGKILL, killed.stderr.read()[-2000:]
  assert sorted(os.listdir(tmp_path / "killed" / ".done")) == sorted(
      [f"train-{k:05d}.json" for k in range(50)] + [f"validation-{k:05d}.json" for k in range(10)])
  assert not (tmp_path / "killed" / "manifest.json").exists()
  again = run_prepare(tmp_path / "killed")
  assert again.wait(timeout=300) == 0, again.stderr.read()[-2000:]
  manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("whole", "killed")]
  assert manifests[0] == manifests[1]
  manifest = manifests[0]
  assert (manifest["source"], manifest["size"], manifest["quality"]) == ("imagenet2012", 40, 95)
  assert manifest["splits"]["train"]["count"] == NUM_EXAMPLES and manifest["splits"]["train"]["shards"] == 50
  for name in ("train-images.npy", "validation-labels.npy", "train-00049.tfrecord"):
    assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "killed" / name).read_bytes(), name
  store = np.load(tmp_path / "whole" / "train-images.npy")
  assert store.shape == (NUM_EXAMPLES, 40, 40, 3) and store.std() > 0


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("prepared"))
  config = imagenet.get_config("runlocal")
  with tfds.testing.mock_data(num_examples=80):
    prepare.prepare(config, out, size=40, shard_size=16)
  return out


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["prepared_jpeg", "uint8_store"])
def test_training_from_a_prepared_copy(tmp_path, prepared_dir, mode):
  config = imagenet.get_config("runlocal")
  config.wandb.mode = "disabled"
  config.data.input_mode = mode
  config.data.prepared_dir = prepared_dir
  final = train.train_and_evaluate(config, str(tmp_path))
  assert final["step"] == 3 and final["split"] == "validation" and final["num_examples"] == 20
  assert all(np.isfinite(m["loss"]) for m in metrics.read_metrics(tmp_path) if "loss" in m and "split" not in m)
  recorded = json.loads((tmp_path / "config.json").read_text())["data"]
  assert (recorded["input_mode"], recorded["prepared_dir"]) == (mode, prepared_dir)


@pytest.mark.slow
def test_prepared_batches_have_the_config_shapes(prepared_dir):
  for mode, shape in (("prepared_jpeg", (8, 32, 32, 3)), ("uint8_store", (8, 40, 40, 3))):
    config = imagenet.get_config("runlocal")
    config.data.input_mode, config.data.prepared_dir = mode, prepared_dir
    dataset = data.build(config)
    assert (dataset.num_train, dataset.num_eval, dataset.steps_per_epoch) == (64, 20, 8)
    batch = next(dataset.train_batches(0))
    assert batch["images"].shape == shape and batch["images"].dtype == np.uint8
    assert [int(b["mask"].sum()) for b in dataset.eval_batches()] == [8, 8, 4]
    images = np.asarray(data.on_device(batch, 32)["images"])
    assert images.shape == (8, 32, 32, 3) and -1 <= images.min() < images.max() <= 1


# Bad input: one line each, nothing written.


def test_size_smaller_than_the_resolution(tmp_path):
  config = imagenet.get_config("runlocal")
  with pytest.raises(ConfigError, match=r"^--size 24 is smaller than resolution=32; the copy must store"):
    prepare.prepare(config, str(tmp_path / "out"), size=24)
  assert not (tmp_path / "out").exists()


def test_a_non_image_dataset(tmp_path):
  config = imagenet.get_config("runlocal")
  config.data.name = "imdb_reviews"
  with pytest.raises(ConfigError, match=r"^data.name='imdb_reviews' is not an image classification dataset"):
    prepare.prepare(config, str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_other_settings_in_the_same_directory(tmp_path, prepared_dir):
  config = imagenet.get_config("runlocal")
  with tfds.testing.mock_data(num_examples=80):
    with pytest.raises(ConfigError, match=r"holds a copy prepared with other settings \(shard_size, size differ"):
      prepare.prepare(config, prepared_dir, size=48)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"is a non-empty directory that holds no prepared copy"):
      prepare.prepare(config, str(tmp_path))
  assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.slow
def test_command_line_bad_flag_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, "-m", "mnet_jax.prepare", *FLAGS[:2], "--out", str(tmp_path / "o"),
                           "--formats", "png"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      "error: --formats 'png' is not allowed; choose from prepared_jpeg, uint8_store")
  assert not (tmp_path / "o").exists()


def test_command_line_with_neither_the_dataset_nor_a_network_is_one_line_within_seconds(tmp_path):
  start = time.monotonic()
  result = subprocess.run([sys.executable, "-c", OFFLINE_PREPARE, "--config", "mnet_jax/configs/fashion_mnist.py",
                           "--out", str(tmp_path / "o"), f"--config.data.data_dir={tmp_path}"], cwd=REPO,
                          capture_output=True, text=True, timeout=400)
  assert time.monotonic() - start < 120  # the start of Python, JAX and TensorFlow included; tfds retries for minutes
  assert result.returncode != 0
  line = result.stderr.strip().splitlines()[-1]
  assert line.startswith(f"error: cannot prepare tfds dataset 'fashion_mnist' in {tmp_path}: it is not there and ")
  assert f"`tfds build fashion_mnist --data_dir {tmp_path}`" in line
  assert os.listdir(tmp_path) == []
