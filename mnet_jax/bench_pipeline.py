r"""Throughput of each input mode alone against the full-decode pipeline (`baseline`), in the same run.

  python -m mnet_jax.bench --pipeline [--json] [--resolutions 224,128] [--images 256] [--repeats 3]

It makes a synthetic set of ImageNet-like JPEGs (ImageNet's image sizes, ~500x375 on average, quality 90, content
with smooth colour fields, shapes with edges and 1/f texture), then times at each resolution:
  baseline       full decode, Inception crop, resize, flip, float32 scaling on the host (data.inception_crop)
  jpeg           the training pipeline of data.jpeg_data: crop-window decode, uint8 batches
  prepared_jpeg  the same pipeline on the set re-encoded at shorter side S = 1.25x the resolution (mnet_jax.prepare)
  uint8_store    the host side of the uint8 store at S: row gather, boxes and flips, transfer to the device
Modes are timed in turns (baseline, jpeg, ..., baseline, ...), median of --repeats, each on a fresh pipeline;
img/s is wall-clock, img/cpu-s counts the images per CPU-second this process used (the per-core cost, which
other programs on a shared machine do not inflate).
Beside each, the jitted train step's img/s on this backend (alpha --alpha, batch --step-batch) and the
pipeline/step ratio; for uint8_store also the on-device crop (data.on_device) as a fraction of the step.
"""

import datetime
import json
import os
import platform
import tempfile
import time

import jax
import numpy as np

from mnet_jax import data as data_lib

MODES = ("baseline", "jpeg", "prepared_jpeg", "uint8_store")
RESOLUTIONS = (224, 192, 160, 128)


def cpu_model():
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def parse_resolutions(text):
  from mnet_jax.errors import ConfigError
  from mnet_jax.models.mobilenet_v1 import check_resolution
  try:
    resolutions = [int(r) for r in text.split(",")]
  except ValueError:
    raise ConfigError(f"--resolutions {text!r} is not allowed: expected integers, e.g. 224,128") from None
  for resolution in resolutions:
    check_resolution(resolution)
  return resolutions


# Synthetic ImageNet-like JPEGs ------------------------------------------------------------------


def image_size(rng):
  """(height, width): most ImageNet images are 500 px on the long side with a 4:3 or 3:2 aspect, landscape
  three times in four; the rest spread from ~250 to ~800 px."""
  long_side = 500 if rng.random() < 0.7 else int(rng.integers(250, 801))
  short_side = int(round(long_side * rng.choice([0.75, 0.75, 0.667, 0.8, 1.0, 0.563])))
  return (short_side, long_side) if rng.random() < 0.75 else (long_side, short_side)


def natural_image(rng, height, width):
  """uint8 (height, width, 3): a smooth colour field, a few flat shapes with sharp edges, 1/f texture."""
  coarse = rng.uniform(0, 255, (4, 4, 3))
  ys, xs = np.linspace(0, 3, height)[:, None], np.linspace(0, 3, width)[None, :]
  y0, x0 = np.floor(ys).astype(int).clip(0, 2), np.floor(xs).astype(int).clip(0, 2)
  fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
  image = (coarse[y0, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1, x0] * fy * (1 - fx) +
           coarse[y0, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1, x0 + 1] * fy * fx)
  yy, xx = np.mgrid[:height, :width]
  for _ in range(int(rng.integers(3, 9))):
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    ry, rx = rng.uniform(0.05, 0.3) * height, rng.uniform(0.05, 0.3) * width
    mask = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1) if rng.random() < 0.5 else (
        (abs(yy - cy) < ry) & (abs(xx - cx) < rx))
    image[mask] = rng.uniform(0, 255, 3)
  frequencies = np.sqrt(np.fft.fftfreq(height)[:, None] ** 2 + np.fft.rfftfreq(width)[None, :] ** 2)
  spectrum = (rng.normal(size=frequencies.shape) + 1j * rng.normal(size=frequencies.shape)) / np.maximum(
      frequencies, 1 / max(height, width))
  texture = np.fft.irfft2(spectrum, s=(height, width))
  image += (texture / texture.std() * 12)[..., None]
  return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_jpegs(count, seed=0, quality=90):
  import tensorflow as tf
  rng = np.random.default_rng(seed)
  return [tf.io.encode_jpeg(natural_image(rng, *image_size(rng)), quality=quality).numpy() for _ in range(count)]


def prepared(jpegs, size):
  """The set as mnet_jax.prepare writes it at shorter side `size`: (re-encoded JPEGs, uint8 central squares)."""
  import tensorflow as tf
  from mnet_jax import prepare
  process = prepare.resized_and_encoded(size, 95, prepare.FORMATS)
  pairs = [process(tf.constant(j)) for j in jpegs]
  return [p[0].numpy() for p in pairs], np.stack([p[1].numpy() for p in pairs])


# The pipelines ----------------------------------------------------------------------------------


def records_of(jpegs):
  """data.Records over an in-memory list of JPEGs, repeated to a long epoch."""
  import tensorflow as tf
  epoch = len(jpegs) * 1000

  def read(split, num_examples, shuffle_seed=None):
    ds = tf.data.Dataset.from_tensor_slices((jpegs, np.zeros(len(jpegs), np.int32)))
    return ds.repeat().take(num_examples).with_options(data_lib.pipeline_options())

  return data_lib.Records("synthetic", 1000, epoch, len(jpegs), read)


def config_for(resolution, batch):
  from mnet_jax.configs import imagenet
  config = imagenet.get_config(f"resolution={resolution},recipe=modern")
  config.batch_size = batch
  config.data.shuffle_buffer = 256
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


def rate(make_batches, batch, num_batches):
  """(img/s, img per CPU-second of this process) of num_batches batches of a fresh pipeline, after two warm-up
  batches. The second counts the work alone, whatever else the machine runs meanwhile."""
  batches = make_batches()
  next(batches), next(batches)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(num_batches):
    next(batches)
  seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
  del batches
  return batch * num_batches / seconds, batch * num_batches / cpu_seconds


def step_rate(alpha, resolution, batch, repeats):
  """img/s of the jitted training step (forward, backward, update) on this backend."""
  from mnet_jax import bench
  from mnet_jax.models import MobileNetV1
  model = MobileNetV1(alpha=alpha, num_classes=bench.NUM_CLASSES)
  train_run, _ = bench.jax_runs(model, resolution, batch, jax.devices()[0])
  return batch / float(np.median([bench.time_calls(train_run, 1) for _ in range(repeats)]))


def crop_seconds(store, config, sharding, repeats):
  """Seconds of data.on_device on one uint8-store batch (crop, resize, flip, scaling), jitted, per image."""
  step = jax.jit(lambda b: data_lib.on_device(b, config.resolution)["images"])
  batch = next(store_batches(store, config, sharding))
  step(batch).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step(batch).block_until_ready()
    times.append(time.perf_counter() - start)
  return float(np.median(times)) / config.batch_size


def run(resolutions=RESOLUTIONS, images=256, repeats=3, batch=128, alpha=1.0, step_batch=32, as_json=False):
  from jax.sharding import NamedSharding, PartitionSpec
  from mnet_jax import prepare, train
  data_lib.hide_gpus_from_tensorflow()
  cores = os.cpu_count()
  header = {"cpu": cpu_model(), "cores": cores, "backend": jax.default_backend(), "date":
            datetime.date.today().isoformat(), "images": images, "batch": batch, "alpha": alpha}
  sharding = NamedSharding(train.make_mesh(), PartitionSpec("data"))
  jpegs = synthetic_jpegs(images)
  sizes = [tuple(map(int, data_lib.image_shape(j)[:2])) for j in jpegs]
  header["mean_size"] = "x".join(f"{v:.0f}" for v in np.mean(sizes, 0)[::-1])
  header["mean_jpeg_kb"] = round(float(np.mean([len(j) for j in jpegs])) / 1024, 1)
  if as_json:
    print(json.dumps({"header": header}), flush=True)
  else:
    print(", ".join(f"{k}={v}" for k, v in header.items()))
    print(f"{'mode':>13} {'res':>4} {'S':>4} | {'img/s':>8} {'per core':>8} {'x base':>7} | {'img/cpu-s':>9} "
          f"{'x base':>7} | {'step img/s':>10} "
          f"{'pipe/step':>9} {'crop/step':>9}", flush=True)
  for resolution in resolutions:
    config = config_for(resolution, batch)
    size = prepare.default_size(resolution)
    small_jpegs, store_images = prepared(jpegs, size)
    with tempfile.TemporaryDirectory() as directory:  # the store is read by memory map, as in training
      repeat = -(-4 * batch // len(store_images))  # at least 4 batches an epoch
      np.save(os.path.join(directory, "store.npy"), np.concatenate([store_images] * repeat))
      store = np.load(os.path.join(directory, "store.npy"), mmap_mode="r")
      jpeg_batches = lambda j: data_lib.jpeg_data(config, False, records_of(j)).train_batches(0)  # noqa: E731
      makers = {"baseline": lambda: baseline_batches(jpegs, config), "jpeg": lambda: jpeg_batches(jpegs),
                "prepared_jpeg": lambda: jpeg_batches(small_jpegs),
                "uint8_store": lambda: store_batches(store, config, sharding)}
      # ~2 s per timing at the baseline's speed; the store is ~50x faster
      counts = {mode: max(2, (4 if mode != "uint8_store" else 160) * 128 // batch) for mode in MODES}
      rates = {mode: [] for mode in MODES}
      for _ in range(repeats):
        for mode in MODES:
          rates[mode].append(rate(makers[mode], batch, counts[mode]))
      seconds_per_image_crop = crop_seconds(store, config, sharding, repeats)
    step = step_rate(alpha, resolution, step_batch, repeats)
    base = float(np.median([r[0] for r in rates["baseline"]]))
    base_cpu = float(np.median([r[1] for r in rates["baseline"]]))
    for mode in MODES:
      img_s = float(np.median([r[0] for r in rates[mode]]))
      img_cpu_s = float(np.median([r[1] for r in rates[mode]]))
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
