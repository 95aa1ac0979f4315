"""TensorFlow ops on one encoded image: its shape from the header, the training crop (box, window decode, resize,
flip) and evaluation's central crop, plus the full-decode crop they are checked against."""

from mnet_jax.data.boxes import stateless_box

DCT_RATIOS = (2, 4, 8)  # the scales libjpeg can decode at (1/2, 1/4, 1/8)
DCT_MARGIN = 2  # a scaled window's shorter side stays >= this many times the resolution


def decode_image(image_bytes):
  import tensorflow as tf
  return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)


def image_shape(image_bytes):
  """(height, width, 3) read from the header of a JPEG, else from the decoded image (PNG, GIF, BMP)."""
  import tensorflow as tf
  return tf.cond(tf.io.is_jpeg(image_bytes),
                 lambda: tf.concat([tf.image.extract_jpeg_shape(image_bytes)[:2], [3]], 0),
                 lambda: tf.shape(decode_image(image_bytes)))


def random_flip(image, seed):
  """The horizontal flip of the example whose box is drawn from `seed` (its own stream, seed + [0, 1])."""
  import tensorflow as tf
  return tf.image.stateless_random_flip_left_right(image, seed=seed + tf.constant([0, 1], tf.int64))


def inception_crop(image_bytes, seed, resolution, min_area, flip):
  """Inception-style training crop from the whole decoded image: a random box (boxes.stateless_box), resized,
  randomly flipped, scaled to [-1, 1] in float32. `seed` makes it a pure function of the example's position. The
  reference that `jpeg_crop` must match (same boxes, same flips); the benchmark's baseline."""
  import tensorflow as tf
  image = decode_image(image_bytes)
  begin, size = stateless_box(tf.shape(image), seed, min_area)
  image = tf.slice(image, begin, size)
  image = tf.image.resize(tf.cast(image, tf.float32), (resolution, resolution), antialias=True)
  if flip:
    image = random_flip(image, seed)
  return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)


def crop_box(image_bytes, seed, min_area):
  """inception_crop's box (begin, size) for the same seed, from the image's header alone."""
  return stateless_box(image_shape(image_bytes), seed, min_area)


def decode_window(image_bytes, offset_y, offset_x, height, width, resolution):
  """The window's pixels (uint8, 3 channels), to be resized to `resolution`. A JPEG decodes only the window, at
  1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, a low-pass filter) where the scaled window's shorter side stays
  >= DCT_MARGIN x the resolution: the resize after it (resize_uint8) then works on fewer pixels and still filters.
  (Scaling further, to >= 1x, moves the window by up to a scaled pixel, since the scaled window's corner is
  rounded: 1.2-3.1/255 mean difference from the full-decode crop instead of 0.7-1.4; docs/perf-log.md,
  2026-11-30 f53c139.)"""
  import tensorflow as tf

  def scaled(ratio):
    window = tf.stack([offset_y // ratio, offset_x // ratio, height // ratio, width // ratio])
    return lambda: tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3, ratio=ratio)

  def jpeg():
    shorter = tf.minimum(height, width)
    index = sum(tf.cast(shorter >= DCT_MARGIN * ratio * resolution, tf.int32) for ratio in DCT_RATIOS)
    return tf.switch_case(index, [scaled(ratio) for ratio in (1, *DCT_RATIOS)])

  return tf.cond(tf.io.is_jpeg(image_bytes), jpeg,
                 lambda: tf.image.crop_to_bounding_box(decode_image(image_bytes), offset_y, offset_x, height, width))


def resize_uint8(image, resolution):
  """Antialiased resize to resolution x resolution, rounded back to uint8: bilinear where both sides grow (there
  the antialiased bilinear filter is plain bilinear), the area (box) filter where both shrink, TensorFlow's
  antialiased bilinear (ScaleAndTranslate, 2-3x the cost of the other two) where one grows and one shrinks."""
  import tensorflow as tf
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  size = (resolution, resolution)
  resized = tf.case([
      (tf.logical_and(height <= resolution, width <= resolution),
       lambda: tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")),
      (tf.logical_and(height >= resolution, width >= resolution),
       lambda: tf.image.resize(image, size, method="area")),
  ], default=lambda: tf.image.resize(tf.cast(image, tf.float32), size, antialias=True))
  return tf.saturate_cast(tf.round(resized), tf.uint8)


def jpeg_crop(image_bytes, seed, resolution, min_area, flip):
  """inception_crop's box and flip for the same seed, decoding only the crop window (see decode_window); uint8 out
  (scaled to [-1, 1] on the device by `on_device`)."""
  begin, size = crop_box(image_bytes, seed, min_area)
  image = resize_uint8(decode_window(image_bytes, begin[0], begin[1], size[0], size[1], resolution), resolution)
  return random_flip(image, seed) if flip else image


def central_crop(image_bytes, resolution, crop_fraction):
  """Evaluation: the central crop_fraction of the shorter side (only that window decoded), resized, uint8."""
  import tensorflow as tf
  shape = image_shape(image_bytes)
  height, width = shape[0], shape[1]
  crop = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * crop_fraction, tf.int32)
  window = decode_window(image_bytes, (height - crop) // 2, (width - crop) // 2, crop, crop, resolution)
  return resize_uint8(window, resolution)
