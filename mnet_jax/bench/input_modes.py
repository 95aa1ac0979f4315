r"""Throughput of the input pipelines alone: each input mode against the full-decode pipeline (`baseline`), and the
pipelines that `python -m mnet_jax.bench` prints beside the training step.

  python -m mnet_jax.bench --pipeline [--json] [--resolutions 224,128] [--images 256] [--repeats 3]

It makes `--images` synthetic ImageNet-like JPEGs (`jpegs.py`), then times at each resolution:
  baseline       full decode, Inception crop, resize, flip, float32 scaling on the host (data.inception_crop)
  jpeg           the training pipeline of data.jpeg_data: crop-window decode, uint8 batches
  prepared_jpeg  the same pipeline on the set re-encoded at shorter side S = 1.25x the resolution (mnet_jax.prepare)
  uint8_store    the host side of the uint8 store at S: row gather, boxes and flips, transfer to the device
Modes are timed in turns (baseline, jpeg, ..., baseline, ...), median of --repeats, each on a fresh pipeline of
batch 128; img/s is wall-clock, img/cpu-s counts the images per CPU-second this process used (the per-core cost,
which other programs on a shared machine do not inflate). Beside each, the img/s of the trainer's jitted step
(`jax_runner.py`) on this backend at alpha 1, batch 32, and the pipeline/step ratio; for uint8_store also the
on-device crop (data.on_device) as a fraction of the step.
"""

import datetime
import json
import os
import tempfile

import jax
import numpy as np

from mnet_jax import data as data_lib, machine
from mnet_jax.bench import jax_runner, jpegs as jpegs_lib, model as model_lib
from mnet_jax.bench.timing import batches_rate, timed
from mnet_jax.errors import ConfigError
from mnet_jax.models.mobilenet_v1 import check_resolution

MODES = ("baseline", "jpeg", "prepared_jpeg", "uint8_store")
RESOLUTIONS = (224, 192, 160, 128)
BATCH = 128
STEP_ALPHA, STEP_BATCH = 1.0, 32  # the step the modes are compared with
BATCHES_PER_TIMING = {"baseline": 4, "jpeg": 4, "prepared_jpeg": 4, "uint8_store": 160}  # at batch 128: ~2 s each
SHUFFLE_BUFFER = 256


def parse_resolutions(text):
  try:
    resolutions = [int(r) for r in text.split(",")]
  except ValueError:
    raise ConfigError(f"--resolutions {text!r} is not allowed: expected integers, e.g. 224,128") from None
  for resolution in resolutions:
    check_resolution(resolution)
  return resolutions


# The pipelines ----------------------------------------------------------------------------------


def records_of(jpegs):
  """data.Records over an in-memory list of JPEGs, repeated to a long epoch."""
  import tensorflow as tf
  epoch = len(jpegs) * 1000

  def read(split, num_examples, shuffle_seed=None):
    ds = tf.data.Dataset.from_tensor_slices((jpegs, np.zeros(len(jpegs), np.int32)))
    return ds.repeat().take(num_examples).with_options(data_lib.pipeline_options())

  return data_lib.Records("synthetic", model_lib.NUM_CLASSES, epoch, len(jpegs), read)


def config_for(resolution, batch):
  from mnet_jax.configs import imagenet
  config = imagenet.get_config(f"resolution={resolution},recipe=modern")
  config.batch_size = batch
  config.data.shuffle_buffer = SHUFFLE_BUFFER
  return config


def baseline_batches(jpegs, config):
  """The full-decode pipeline: the same reading, shuffling and batching, data.inception_crop per example, the
  tf.data options of a deterministic pipeline alone."""
  import tensorflow as tf
  options = tf.data.Options()
  options.deterministic = True
  ds = records_of(jpegs).read("train", 10**9, shuffle_seed=0)
  ds = ds.shuffle(config.data.shuffle_buffer, seed=0).enumerate()
  ds = ds.map(lambda i, ex: {"images": data_lib.inception_crop(ex[0], tf.stack([tf.constant(0, tf.int64), i]),
                                                               config.resolution, config.data.min_area, True),
                             "labels": ex[1]}, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(config.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE).with_options(
      options).as_numpy_iterator()


def store_batches(store, config, sharding):
  """The uint8 store's host side: data.store_train_batches, then the transfer to the device."""
  from mnet_jax import train
  labels = np.zeros(len(store), np.int32)
  for batch in data_lib.store_train_batches(store, labels, config.batch_size, 0, config.data.min_area, True, 0):
    yield jax.block_until_ready(train.to_global(batch, sharding))


def fashion_mnist_rate(resolution, batch, num_batches):
  """img/s of the training batches of mnet_jax/configs/fashion_mnist.py (IDX files, shuffle, flip; uint8 out)."""
  from mnet_jax.configs import fashion_mnist
  config = fashion_mnist.get_config(f"resolution={resolution}")
  config.batch_size = batch
  return batches_rate(data_lib.build(config).train_batches(0), batch, num_batches)[0]


def inception_crop_rate(resolution, batch, num_batches):
  """img/s of the ImageNet training preprocessing of the default `jpeg` input mode (decode the Inception crop's
  window, resize, flip) under tf.data, on 64 of the synthetic JPEGs."""
  import tensorflow as tf
  from mnet_jax.configs import imagenet
  data_lib.hide_gpus_from_tensorflow()
  min_area = imagenet.get_config().data.min_area
  ds = tf.data.Dataset.from_tensor_slices(jpegs_lib.synthetic_jpegs(64)).repeat().enumerate()
  ds = ds.map(lambda i, jpeg: data_lib.jpeg_crop(jpeg, tf.stack([tf.constant(0, tf.int64), i]), resolution,
                                                 min_area, True), num_parallel_calls=tf.data.AUTOTUNE)
  return batches_rate(iter(ds.batch(batch).prefetch(2).as_numpy_iterator()), batch, num_batches)[0]


BESIDE_THE_STEP = {"fashion_mnist": fashion_mnist_rate, "imagenet_inception_crop": inception_crop_rate}


# The modes against each other -------------------------------------------------------------------


def step_rate(resolution, batch, repeats):
  """img/s of the trainer's jitted step of MobileNet V1 at STEP_ALPHA on this backend (median of `repeats`)."""
  train_run, _ = jax_runner.jax_runs(model_lib.mobilenet_v1(STEP_ALPHA), resolution, batch, jax.devices()[0])
  return batch / float(np.median([timed(train_run).seconds for _ in range(repeats)]))


def crop_seconds(store, config, sharding, repeats):
  """Seconds of data.on_device on one uint8-store batch (crop, resize, flip, scaling), jitted, per image."""
  crop = jax.jit(lambda b: data_lib.on_device(b, config.resolution)["images"])
  batch = next(store_batches(store, config, sharding))
  crop(batch).block_until_ready()
  seconds = [timed(lambda: crop(batch).block_until_ready(), pause=0).seconds for _ in range(repeats)]
  return float(np.median(seconds)) / config.batch_size


def mode_rates(jpegs, resolution, repeats, sharding):
  """{mode: [(img/s, img/cpu-s) per repeat]}, the stored size S, and the on-device crop's seconds per image."""
  from mnet_jax import prepare
  config = config_for(resolution, BATCH)
  size = prepare.default_size(resolution)
  small_jpegs, store_images = jpegs_lib.prepared(jpegs, size)
  with tempfile.TemporaryDirectory() as directory:  # the store is read by memory map, as in training
    copies = -(-4 * BATCH // len(store_images))  # at least 4 batches an epoch
    np.save(os.path.join(directory, "store.npy"), np.concatenate([store_images] * copies))
    store = np.load(os.path.join(directory, "store.npy"), mmap_mode="r")
    jpeg_batches = lambda j: data_lib.jpeg_data(config, False, records_of(j)).train_batches(0)  # noqa: E731
    makers = {"baseline": lambda: baseline_batches(jpegs, config), "jpeg": lambda: jpeg_batches(jpegs),
              "prepared_jpeg": lambda: jpeg_batches(small_jpegs),
              "uint8_store": lambda: store_batches(store, config, sharding)}
    rates = {mode: [] for mode in MODES}
    for _ in range(repeats):
      for mode in MODES:
        rates[mode].append(batches_rate(makers[mode](), BATCH, BATCHES_PER_TIMING[mode], warmup=2))
    return rates, size, crop_seconds(store, config, sharding, repeats)


def run(resolutions=RESOLUTIONS, images=256, repeats=3, as_json=False):
  """Times the modes at each resolution and prints a table (or JSON lines: a header, then one per mode)."""
  from jax.sharding import NamedSharding, PartitionSpec
  from mnet_jax import train
  data_lib.hide_gpus_from_tensorflow()
  cores = os.cpu_count()
  header = {"cpu": machine.cpu_model(), "cores": cores, "backend": jax.default_backend(),
            "date": datetime.date.today().isoformat(), "commit": machine.code_commit(), "images": images,
            "batch": BATCH, "alpha": STEP_ALPHA}
  sharding = NamedSharding(train.make_mesh(), PartitionSpec("data"))
  jpegs = jpegs_lib.synthetic_jpegs(images)
  sizes = [tuple(map(int, data_lib.image_shape(j)[:2])) for j in jpegs]
  header["mean_size"] = "x".join(f"{v:.0f}" for v in np.mean(sizes, 0)[::-1])
  header["mean_jpeg_kb"] = round(float(np.mean([len(j) for j in jpegs])) / 1024, 1)
  if as_json:
    print(json.dumps({"header": header}), flush=True)
  else:
    print(", ".join(f"{k}={v}" for k, v in header.items()))
    print(f"{'mode':>13} {'res':>4} {'S':>4} | {'img/s':>8} {'per core':>8} {'x base':>7} | {'img/cpu-s':>9} "
          f"{'x base':>7} | {'step img/s':>10} {'pipe/step':>9} {'crop/step':>9}", flush=True)
  for resolution in resolutions:
    rates, size, seconds_per_image_crop = mode_rates(jpegs, resolution, repeats, sharding)
    step = step_rate(resolution, STEP_BATCH, repeats)
    medians = {mode: np.median(np.array(rates[mode]), axis=0) for mode in MODES}  # (img/s, img/cpu-s)
    base, base_cpu = map(float, medians["baseline"])
    for mode in MODES:
      img_s, img_cpu_s = map(float, medians[mode])
      row = {"mode": mode, "resolution": resolution, "stored_size": None if mode in ("baseline", "jpeg") else size,
             "cores": cores, "img_s": round(img_s, 1), "img_s_per_core": round(img_s / cores, 1),
             "baseline_img_s": round(base, 1), "ratio": round(img_s / base, 3),
             "img_per_cpu_s": round(img_cpu_s, 1), "cpu_ratio": round(img_cpu_s / base_cpu, 3),
             "step_img_s": round(step, 1), "pipeline_over_step": round(img_s / step, 2)}
      if mode == "uint8_store":
        row["device_crop_over_step"] = round(seconds_per_image_crop * step, 4)
      if as_json:
        print(json.dumps({**row, **header}), flush=True)
      else:
        crop = f"{row['device_crop_over_step']:9.3f}" if mode == "uint8_store" else f"{'':>9}"
        print(f"{mode:>13} {resolution:4d} {row['stored_size'] or '':>4} | {img_s:8.0f} {img_s / cores:8.0f} "
              f"{row['ratio']:7.2f} | {img_cpu_s:9.0f} {row['cpu_ratio']:7.2f} | {step:10.1f} "
              f"{row['pipeline_over_step']:9.1f} {crop}", flush=True)
