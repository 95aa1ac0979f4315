"""Synthetic ImageNet-like JPEGs for the input-pipeline benchmarks and tests, and their prepared copies.

ImageNet's image sizes (mostly 500 px on the long side, 4:3 or 3:2), quality 90, content with smooth colour
fields, flat shapes with sharp edges and 1/f texture. The bench's set (256 images, seed 0) averages 480x413 px
(width x height) and ~60 KB a file; `python -m mnet_jax.bench --pipeline` prints both in its header.
"""

import numpy as np


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
  """`count` encoded JPEGs (bytes), the same for the same seed."""
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
