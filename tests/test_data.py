"""Input pipelines: Debian's Fashion-MNIST files, tfds (mock imagenet2012), exact evaluation, bad input."""

import gzip
import os
import socket
import time

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from mnet_jax.configs import fashion_mnist, imagenet
from mnet_jax import data
from mnet_jax.errors import ConfigError


def small_fashion_config(**data_fields):
  config = fashion_mnist.get_config("runlocal")
  config.batch_size = 32
  config.data.max_train_examples = 256
  config.data.max_eval_examples = 100
  config.data.update(data_fields)
  return config


def test_fashion_mnist_idx_files_are_read_whole():
  arrays = data.load_fashion_mnist(fashion_mnist.get_config().data)
  train_images, train_labels = arrays["train"]
  test_images, test_labels = arrays["test"]
  assert train_images.shape == (60000, 28, 28, 1) and test_images.shape == (10000, 28, 28, 1)
  assert train_images.dtype == np.uint8 and train_labels.dtype == np.int32
  assert np.bincount(train_labels).tolist() == [6000] * 10  # Fashion-MNIST is balanced
  assert np.bincount(test_labels).tolist() == [1000] * 10
  assert 0 < train_images.mean() < 255


def test_fashion_mnist_batches_cross_as_uint8_and_are_resized_three_channel_in_range_on_the_device():
  config = small_fashion_config()
  config.resolution = 48
  dataset = data.build(config)
  assert (dataset.num_classes, dataset.num_train, dataset.num_eval, dataset.steps_per_epoch) == (10, 256, 100, 8)
  batch = next(dataset.train_batches(0))
  assert batch["images"].shape == (32, 28, 28, 1) and batch["images"].dtype == np.uint8
  images = np.asarray(jax.jit(data.on_device, static_argnums=1)(batch, 48)["images"])
  assert images.shape == (32, 48, 48, 3) and images.dtype == np.float32
  assert images.min() >= -1.0 and images.max() <= 1.0
  np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grayscale copied
  # The same antialiased bilinear resize as TensorFlow's, up (48) and down (20) from 28 x 28.
  import tensorflow as tf
  for size in (48, 20):
    ours = np.asarray(jax.jit(data.on_device, static_argnums=1)(batch, size)["images"][..., :1])
    theirs = tf.image.resize(tf.cast(batch["images"], tf.float32), (size, size), antialias=True).numpy()
    np.testing.assert_allclose(ours, np.clip(theirs / 127.5 - 1.0, -1.0, 1.0), atol=2e-5)


def test_training_order_is_a_pure_function_of_seed_epoch_and_position():
  dataset = data.build(small_fashion_config())
  stream = dataset.train_batches(0)
  first_epochs = [next(stream) for _ in range(2 * dataset.steps_per_epoch)]
  resumed = dataset.train_batches(11)  # step 11 = epoch 1, position 3
  for expected in first_epochs[11:]:
    got = next(resumed)
    np.testing.assert_array_equal(got["images"], expected["images"])
    np.testing.assert_array_equal(got["labels"], expected["labels"])
  epoch0 = np.concatenate([b["labels"] for b in first_epochs[:8]])
  epoch1 = np.concatenate([b["labels"] for b in first_epochs[8:]])
  assert sorted(epoch0) == sorted(epoch1) and not np.array_equal(epoch0, epoch1)  # a new order each epoch
  other_seed = small_fashion_config()
  other_seed.seed = 1
  assert not np.array_equal(next(data.build(other_seed).train_batches(0))["labels"], first_epochs[0]["labels"])


def test_flips_are_applied_to_about_half_the_images():
  with_flips = next(data.build(small_fashion_config()).train_batches(0))["images"]
  without = next(data.build(small_fashion_config(flip=False)).train_batches(0))["images"]
  flipped = [not np.array_equal(a, b) for a, b in zip(with_flips, without)]
  assert 4 <= sum(flipped) <= 28
  for a, b, f in zip(with_flips, without, flipped):
    if f:
      np.testing.assert_allclose(a, b[:, ::-1], atol=1e-5)


def test_evaluation_covers_the_split_exactly_with_a_masked_last_batch():
  dataset = data.build(small_fashion_config())  # 100 examples, batch 32 -> 32, 32, 32, 4 + 28 padding
  batches = list(dataset.eval_batches())
  assert [int(b["mask"].sum()) for b in batches] == [32, 32, 32, 4]
  assert all(b["images"].shape == (32, 28, 28, 1) for b in batches)
  labels = np.concatenate([b["labels"][b["mask"] > 0] for b in batches])
  np.testing.assert_array_equal(labels, data.load_fashion_mnist(small_fashion_config().data)["test"][1][:100])


def test_imagenet_pipeline_on_mock_data():
  config = imagenet.get_config("runlocal")
  config.resolution = 64
  config.data.max_train_examples = 32  # 4 steps an epoch: 5 batches cross into the second
  with tfds.testing.mock_data(num_examples=40):
    dataset = data.build(config)
    assert dataset.num_classes == 1000 and dataset.num_train == 32 and dataset.num_eval == 20
    assert dataset.steps_per_epoch == 4
    train = dataset.train_batches(0)
    batches = [next(train) for _ in range(5)]
    resumed = next(dataset.train_batches(4))  # epoch 1, position 0
    evaluation = list(dataset.eval_batches())
  assert batches[0]["images"].shape == (8, 64, 64, 3) and batches[0]["labels"].shape == (8,)
  assert all(b["images"].dtype == np.uint8 for b in batches + evaluation)  # scaled on the device
  np.testing.assert_array_equal(resumed["images"], batches[4]["images"])
  assert [int(b["mask"].sum()) for b in evaluation] == [8, 8, 4]


def test_inception_crop_respects_the_minimum_area():
  import tensorflow as tf
  image = np.zeros((100, 200, 3), np.uint8)
  image[:, :, 0] = np.arange(200)[None, :]  # red encodes the column
  encoded = tf.io.encode_png(image)
  for i in range(20):
    crop = data.inception_crop(encoded, tf.constant([7, i], tf.int64), 32, min_area=0.5, flip=False).numpy()
    assert crop.shape == (32, 32, 3)
    columns = (crop[..., 0] + 1) * 127.5
    assert columns.max() - columns.min() >= 90  # area >= 0.5 * 100 * 200 and height <= 100: width >= 100


# Bad input: one clear line each.


def test_unknown_dataset():
  config = small_fashion_config(name="no_such_dataset")
  with pytest.raises(ConfigError, match=r"^data.name='no_such_dataset' is not a tensorflow-datasets dataset"):
    data.build(config)


def test_unreadable_data_dir(tmp_path):
  config = imagenet.get_config("runlocal")
  config.data.data_dir = str(tmp_path / "missing")
  with pytest.raises(ConfigError, match=r"^data.data_dir='.*missing' is not a readable directory$"):
    data.build(config)


def test_resolution_below_32():
  config = small_fashion_config()
  config.resolution = 28
  with pytest.raises(ConfigError, match=r"^resolution=28 is not allowed: it must be an integer >= 32"):
    data.build(config)


def no_network(*args, **kwargs):
  """socket.getaddrinfo on a machine with no network: no host name resolves, so nothing is contacted."""
  raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_the_no_network_fake_makes_tfds_downloads_fail_as_offline(tmp_path, monkeypatch):
  import requests
  from tensorflow_datasets.core.download import downloader
  monkeypatch.setattr(socket, "getaddrinfo", no_network)
  monkeypatch.setattr(downloader, "MAX_RETRIES", 0)  # tfds alone: the error below after about 3 minutes
  with pytest.raises(requests.ConnectionError, match="NameResolutionError"):
    tfds.builder("fashion_mnist", data_dir=str(tmp_path)).download_and_prepare()


def test_missing_fashion_mnist_files_with_no_network_fail_in_seconds_naming_the_directories(tmp_path, monkeypatch):
  # With or without a network here, the test runs offline: tfds would download into tmp_path otherwise.
  monkeypatch.setattr(socket, "getaddrinfo", no_network)
  config = small_fashion_config(fashion_mnist_dir=str(tmp_path / "idx"), data_dir=str(tmp_path))
  start = time.monotonic()
  with pytest.raises(ConfigError) as error:
    data.build(config)
  assert time.monotonic() - start < 30  # tfds's own retries take minutes
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(f"cannot prepare tfds dataset 'fashion_mnist' in {tmp_path}: it is not there and its "
                            "download host fashion-mnist.s3-website.eu-central-1.amazonaws.com (NameResolutionError) "
                            "cannot be reached; build it with `tfds build fashion_mnist --data_dir ")
  assert f"data.fashion_mnist_dir='{tmp_path / 'idx'}'" in message
  assert "apt-get install dataset-fashion-mnist" in message
  assert os.listdir(tmp_path) == []  # nothing downloaded, nothing written


def test_tfds_dataset_not_prepared_with_downloads_off_names_the_build_command(tmp_path):
  config = small_fashion_config(name="cifar10", data_dir=str(tmp_path), download=False)
  with pytest.raises(ConfigError, match=rf"^cannot prepare tfds dataset 'cifar10' in {tmp_path}: it is not there and "
                                        rf"data.download is off; build it with `tfds build cifar10 --data_dir "
                                        rf"{tmp_path}` on a machine with a network and copy the directory here$"):
    data.build(config)


def test_missing_fashion_mnist_files_with_downloads_off(tmp_path):
  config = small_fashion_config(fashion_mnist_dir=str(tmp_path), download=False)
  with pytest.raises(ConfigError, match=r"^Fashion-MNIST files are missing from .*`apt-get install"):
    data.build(config)


def test_corrupt_fashion_mnist_file(tmp_path):
  source = fashion_mnist.get_config().data.fashion_mnist_dir
  for name in os.listdir(source):
    with open(os.path.join(source, name), "rb") as f, open(tmp_path / name, "wb") as g:
      g.write(f.read())
  with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
    f.write(b"\x00\x00\x08\x01" + b"\x00" * 20)
  with pytest.raises(ConfigError, match="cannot read Fashion-MNIST"):
    data.build(small_fashion_config(fashion_mnist_dir=str(tmp_path)))


def mnet_jax_imports(path):
  """The mnet_jax modules a file imports, at the top or inside functions."""
  import ast
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith("mnet_jax"))
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnet_jax"):
      found.add(node.module)
      found.update(f"{node.module}.{a.name}" for a in node.names)  # `from mnet_jax import data` names a module
  return found


def test_the_data_package_prepare_and_process_import_in_one_direction():
  import pathlib
  root = pathlib.Path(data.__file__).parent.parent
  modules = {".".join(("mnet_jax", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}
  graph = {name: {m for m in mnet_jax_imports(path) if m in modules and m != name} for name, path in modules.items()}

  def reaches(start, goal, seen=()):
    return any(m == goal or (m not in seen and reaches(m, goal, (*seen, m))) for m in graph[start])

  ours = [name for name in modules if name.startswith("mnet_jax.data") or name in ("mnet_jax.prepare",
                                                                                    "mnet_jax.process")]
  assert [name for name in ours if reaches(name, name)] == []
  assert any(m.startswith("mnet_jax.data") for m in graph["mnet_jax.prepare"])
  assert not any(m.startswith("mnet_jax.data") for m in graph["mnet_jax.process"])
