"""The input modes give the same augmentation: the JPEG path's boxes and flips are the full-decode crop's, the uint8
store's boxes follow the same rule, evaluation batches agree across modes; bad settings are one line."""

import json

import numpy as np
import pytest
import tensorflow as tf

from mnet_jax.configs import imagenet
from mnet_jax import data, prepare
from mnet_jax.bench.jpegs import synthetic_jpegs
from mnet_jax.errors import ConfigError


@pytest.fixture(scope="module")
def jpegs():
  return synthetic_jpegs(6, seed=1)


def test_jpeg_crop_takes_the_full_decode_crops_box_and_flip(jpegs):
  differences = []
  for i, image_bytes in enumerate(jpegs):
    for j in range(4):
      seed = tf.constant([3, 10 * i + j], tf.int64)
      begin, size = data.crop_box(image_bytes, seed, 0.08)
      full_begin, full_size, _ = tf.image.stateless_sample_distorted_bounding_box(
          tf.shape(data.decode_image(image_bytes)), tf.zeros([0, 0, 4], tf.float32), seed=seed,
          min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
          use_image_if_no_bounding_boxes=True)
      np.testing.assert_array_equal(begin.numpy(), full_begin.numpy())
      np.testing.assert_array_equal(size.numpy(), full_size.numpy())
      reference = (data.inception_crop(image_bytes, seed, 64, 0.08, True).numpy() + 1) * 127.5
      crop = data.jpeg_crop(image_bytes, seed, 64, 0.08, True).numpy().astype(np.float32)
      assert crop.dtype == np.float32 and crop.shape == reference.shape == (64, 64, 3)
      # Same pixels up to rounding, DCT-domain scaling and the box filter in place of the antialiased bilinear
      # (of 255; at 64 px most crops shrink 3-8x); the mirror image is far off: the same flip.
      differences.append(np.abs(crop - reference).mean())
      assert differences[-1] < 4.0 and np.abs(crop[:, ::-1] - reference).mean() > 2 * differences[-1]
  assert np.mean(differences) < 2.0, differences


def test_resize_is_the_antialiased_bilinear_where_it_grows_and_a_box_filter_where_it_shrinks(jpegs):
  image = tf.io.decode_jpeg(jpegs[0])
  for window, resolution in (((50, 40), 64), ((300, 220), 64), ((60, 90), 64)):  # grows, shrinks, both
    crop = image[:window[0], :window[1]]
    reference = tf.image.resize(tf.cast(crop, tf.float32), (resolution, resolution), antialias=True).numpy()
    ours = data.resize_uint8(crop, resolution).numpy().astype(np.float32)
    assert ours.shape == (resolution, resolution, 3)
    if window[0] <= resolution and window[1] <= resolution or window[0] < resolution < window[1]:
      assert np.abs(ours - reference).max() <= 0.5 + 1e-3  # the same filter, rounded to uint8
    else:
      box = tf.image.resize(crop, (resolution, resolution), method="area").numpy()
      assert np.abs(ours - box).max() <= 0.5 + 1e-3
      # A box of the same footprint: close to the antialiased bilinear (of 255), and far from point sampling.
      nearest = tf.image.resize(crop, (resolution, resolution), method="nearest").numpy().astype(np.float32)
      assert np.abs(ours - reference).mean() < 2.0 < np.abs(nearest - reference).mean(), (
          np.abs(ours - reference).mean(), np.abs(nearest - reference).mean())


def test_store_boxes_follow_the_rule_of_tensorflows_sampler():
  size, count, min_area = 160, 400, 0.08
  ours = data.sample_boxes(np.random.default_rng(0), count, size, size, min_area)
  theirs = []
  for i in range(count):
    begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        [size, size, 3], tf.zeros([0, 0, 4], tf.float32), seed=[5, i], min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(min_area, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    theirs.append([begin[0], begin[1], box_size[0], box_size[1]])
  theirs = np.array(theirs, np.float32)
  for boxes in (ours, theirs):
    assert (boxes[:, :2] >= 0).all() and (boxes[:, :2] + boxes[:, 2:] <= size).all()
  area = lambda b: b[:, 2] * b[:, 3] / size**2  # noqa: E731
  aspect = lambda b: b[:, 3] / b[:, 2]  # noqa: E731
  assert area(ours).min() >= min_area - 0.01 and 3 / 4 - 0.02 <= aspect(ours).min()
  assert aspect(ours).max() <= 4 / 3 + 0.02
  for statistic in (area, aspect, lambda b: b[:, 0] + b[:, 2] / 2, lambda b: b[:, 1] + b[:, 3] / 2):
    a, b = np.sort(statistic(ours)), np.sort(statistic(theirs))
    grid = np.concatenate([a, b])
    ks = np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max()
    assert ks < 0.12, ks  # two-sample Kolmogorov-Smirnov: p > 0.1 at n = 400


@pytest.mark.slow
def test_on_device_crop_of_the_whole_image_is_the_antialiased_resize_and_flips_mirror():
  image = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
  boxes = np.array([[0, 0, 40, 40]] * 2, np.float32)
  out = np.asarray(data.on_device({"images": image, "labels": np.zeros(2, np.int32), "boxes": boxes,
                                   "flips": np.array([False, True])}, 32)["images"])
  reference = tf.image.resize(image.astype(np.float32), (32, 32), antialias=True).numpy() / 127.5 - 1
  np.testing.assert_allclose(out[0], reference[0], atol=1e-3)
  np.testing.assert_allclose(out[1], reference[1][:, ::-1], atol=1e-3)


def test_store_flips_about_half_and_the_order_is_a_pure_function_of_the_step():
  images = np.random.default_rng(0).integers(0, 256, (64, 20, 20, 3), dtype=np.uint8)
  labels = np.arange(64, dtype=np.int32)
  stream = data.store_train_batches(images, labels, 16, 0, 0.08, True, 0)
  first = [next(stream) for _ in range(8)]
  assert 0.3 < np.mean([b["flips"] for b in first]) < 0.7
  resumed = data.store_train_batches(images, labels, 16, 0, 0.08, True, 5)
  for expected in first[5:]:
    got = next(resumed)
    for key in expected:
      np.testing.assert_array_equal(got[key], expected[key])
    np.testing.assert_array_equal(got["images"], images[got["labels"]])


@pytest.mark.slow
def test_evaluation_batches_of_the_store_and_of_the_jpeg_path_agree(jpegs):
  size, resolution = 80, 64
  process = prepare.resized_and_encoded(size, 95, prepare.FORMATS)
  squares = np.stack([process(tf.constant(j))[1].numpy() for j in jpegs])
  batch = {"images": squares, "labels": np.zeros(len(jpegs), np.int32),
           "boxes": data.central_boxes(len(jpegs), size, 0.875), "flips": np.zeros(len(jpegs), bool)}
  store = (np.asarray(data.on_device(batch, resolution)["images"]) + 1) * 127.5
  jpeg = np.stack([data.central_crop(j, resolution, 0.875).numpy() for j in jpegs]).astype(np.float32)
  assert np.abs(store - jpeg).mean() < 4.0, np.abs(store - jpeg).mean()  # of 255: resize and rounding paths


# Bad input: one line each.


def mode_config(mode, prepared_dir=None):
  config = imagenet.get_config("runlocal")
  config.data.input_mode = mode
  config.data.prepared_dir = prepared_dir
  return config


def test_unknown_mode():
  with pytest.raises(ConfigError, match=r"^data.input_mode='png_store' is unknown; allowed: jpeg, prepared_jpeg, "
                                        r"uint8_store$"):
    data.build(mode_config("png_store"))


def test_prepared_mode_without_a_directory_and_a_directory_without_a_prepared_mode():
  with pytest.raises(ConfigError, match=r"^data.input_mode='uint8_store' needs data.prepared_dir"):
    data.build(mode_config("uint8_store"))
  with pytest.raises(ConfigError, match=r"^data.prepared_dir='/x' is set but data.input_mode='jpeg'"):
    data.build(mode_config("jpeg", "/x"))


def test_missing_and_unfinished_prepared_dirs(tmp_path):
  with pytest.raises(ConfigError, match=r"^data.prepared_dir='.*missing' is not a directory; write it with"):
    data.build(mode_config("prepared_jpeg", str(tmp_path / "missing")))
  with pytest.raises(ConfigError, match=r"holds no manifest.json \(not prepared, or not finished\)"):
    data.build(mode_config("uint8_store", str(tmp_path)))


def test_mismatched_prepared_dirs(tmp_path):
  manifest = {"source": "imagenet2012", "formats": ["prepared_jpeg"], "size": 40, "num_classes": 1000,
              "splits": {"train": {}, "validation": {}}}
  (tmp_path / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(ConfigError, match=r"holds prepared_jpeg, not data.input_mode='uint8_store'; prepare it with"):
    data.build(mode_config("uint8_store", str(tmp_path)))
  config = mode_config("prepared_jpeg", str(tmp_path))
  config.resolution = 64
  with pytest.raises(ConfigError, match=r"stores 40 px \(shorter side\), less than resolution=64; prepare a copy"):
    data.build(config)
  config.data.name = "imagenette"
  with pytest.raises(ConfigError, match=r"holds a copy of 'imagenet2012', not of data.name='imagenette'$"):
    data.build(config)


@pytest.mark.slow
def test_pipeline_benchmark_prints_a_json_line_per_mode():
  import subprocess
  import sys
  result = subprocess.run([sys.executable, "-m", "mnet_jax.bench", "--pipeline", "--resolutions", "32", "--images",
                           "8", "--repeats", "1", "--json"], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  header, *rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
  assert header["header"]["cores"] >= 1 and [r["mode"] for r in rows] == ["baseline", "jpeg", "prepared_jpeg",
                                                                           "uint8_store"]
  for row in rows:
    assert {"resolution", "cores", "img_s", "img_s_per_core", "baseline_img_s", "ratio", "step_img_s"} <= set(row)
    assert row["resolution"] == 32 and row["img_s"] > 0 and row["step_img_s"] > 0
    assert row["ratio"] == pytest.approx(row["img_s"] / row["baseline_img_s"], rel=1e-2)
  assert 0 < rows[-1]["device_crop_over_step"]


@pytest.mark.slow
def test_pipeline_benchmark_bad_resolutions_is_one_line():
  import subprocess
  import sys
  result = subprocess.run([sys.executable, "-m", "mnet_jax.bench", "--pipeline", "--resolutions", "224,x"],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines() == [
      "error: --resolutions '224,x' is not allowed: expected integers, e.g. 224,128"]
