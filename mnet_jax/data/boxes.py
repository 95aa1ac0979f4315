"""The Inception crop-box rule, in its two forms: TensorFlow's sampler for the JPEG modes (`stateless_box`) and a
vectorised numpy copy of it for the uint8 store (`sample_boxes`), both driven by the constants below."""

import numpy as np

ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)  # width / height of a training box
MAX_ATTEMPTS = 10  # boxes drawn before the whole image is taken
FLIP_PROBABILITY = 0.5  # of a horizontal flip; TensorFlow's stateless_random_flip_left_right uses the same


def stateless_box(image_shape, seed, min_area):
  """(begin, size) of a training box of area in [min_area, 1] of an image of shape (height, width, channels):
  tf.image.stateless_sample_distorted_bounding_box, a pure function of `seed`."""
  import tensorflow as tf
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_shape, tf.zeros([0, 0, 4], tf.float32), seed=seed, min_object_covered=0.0,
      aspect_ratio_range=ASPECT_RATIO_RANGE, area_range=(min_area, 1.0), max_attempts=MAX_ATTEMPTS,
      use_image_if_no_bounding_boxes=True)
  return begin, size


def sample_boxes(rng, count, height, width, min_area):
  """(count, 4) float32 boxes (y, x, h, w) by stateless_box's rule (aspect drawn per attempt, height uniform over
  the heights whose area is in [min_area, 1], up to MAX_ATTEMPTS attempts, else the whole image), vectorised over
  the batch; TensorFlow's rounding steps are kept so that the boxes follow its distribution."""
  boxes = np.tile(np.array([0, 0, height, width], np.float32), (count, 1))
  todo = np.ones(count, bool)
  for _ in range(MAX_ATTEMPTS):
    aspect = rng.uniform(*ASPECT_RATIO_RANGE, count)
    min_h = np.rint(np.sqrt(min_area * height * width / aspect))
    max_h = np.rint(np.sqrt(height * width / aspect))
    # The tallest box whose rounded width still fits the image, as TensorFlow finds it.
    too_wide = np.rint(max_h * aspect) > width
    max_h = np.where(too_wide, np.floor((width + 0.5 - 1e-7) / aspect), max_h)
    max_h = np.where(too_wide & (np.rint(max_h * aspect) > width), max_h - 1, max_h)
    max_h = np.minimum(max_h, height)
    min_h = np.minimum(min_h, max_h)
    h = min_h + np.floor(rng.random(count) * (max_h - min_h + 1))
    w = np.rint(h * aspect)
    area = h * w
    low = area < min_area * height * width
    h = np.where(low, h + 1, h)
    w = np.where(low, np.rint(h * aspect), w)
    high = h * w > height * width
    h = np.where(high, h - 1, h)
    w = np.where(high, np.rint(h * aspect), w)
    ok = todo & (h * w >= min_area * height * width) & (h * w <= height * width) & (w <= width) & (h <= height) & (
        w > 0) & (h > 0)
    y = np.floor(rng.random(count) * np.maximum(height - h, 1)) * (h < height)
    x = np.floor(rng.random(count) * np.maximum(width - w, 1)) * (w < width)
    boxes[ok] = np.stack([y, x, h, w], 1)[ok]
    todo &= ~ok
  return boxes


def central_boxes(count, size, crop_fraction):
  """(count, 4) boxes (y, x, h, w) of the central crop_fraction of a size x size image: evaluation's crop."""
  crop = int(size * crop_fraction)
  return np.tile(np.array([(size - crop) // 2, (size - crop) // 2, crop, crop], np.float32), (count, 1))
