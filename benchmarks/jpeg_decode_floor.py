r"""How far the `jpeg` input mode can go: its per-image cost beside the parts of a JPEG decode that no crop avoids.

  python benchmarks/jpeg_decode_floor.py [--images 200] [--resolution 128] [--rounds 3]

On the benchmark's synthetic ImageNet-like JPEGs (`mnet_jax.bench.jpegs.synthetic_jpegs`), each operation
runs as a tf.data map on one thread over all images (reduced to its maximum pixel, so that Python does not time
itself and no output can be skipped), in turn, `--rounds` times (the best round kept); it prints milliseconds per
image, images/s and the baseline's time over each. libjpeg must entropy-decode (Huffman) every block above and
inside a window before it reaches the window, whatever the DCT scale, and stops after the window's last row (the
top and bottom 64-row windows show it); the full decode at 1/8 scale does all of that work and almost no inverse
DCT, so its time bounds how fast any crop reaching the bottom of the image can be.
"""

import argparse
import datetime
import time

import numpy as np

from mnet_jax import process


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--images", type=int, default=200)
  parser.add_argument("--resolution", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  process.setup_process()
  import tensorflow as tf
  tf.config.threading.set_inter_op_parallelism_threads(1)
  tf.config.threading.set_intra_op_parallelism_threads(1)
  from mnet_jax import data
  from mnet_jax.bench.jpegs import synthetic_jpegs
  from mnet_jax.machine import cpu_model

  jpegs = synthetic_jpegs(args.images, seed=0)
  seeds = np.array([[0, i] for i in range(len(jpegs))], np.int64)
  r = args.resolution
  operations = {
      "baseline: full decode, crop, antialiased resize": lambda b, s: data.inception_crop(b, s, r, 0.08, True),
      "jpeg mode: window decode, resize, flip": lambda b, s: data.jpeg_crop(b, s, r, 0.08, True),
      "  its window decode alone": lambda b, s: window(b, s),
      "  a window of the top 64 rows, full width": lambda b, s: rows(b, top=True),
      "  a window of the bottom 64 rows, full width": lambda b, s: rows(b, top=False),
      "full decode": lambda b, s: tf.io.decode_jpeg(b, channels=3),
      "full decode at 1/8 DCT scale (entropy decoding)": lambda b, s: tf.io.decode_jpeg(b, channels=3, ratio=8),
      "header and box only": lambda b, s: data.crop_box(b, s, 0.08),
  }

  def window(image_bytes, seed):
    begin, size = data.crop_box(image_bytes, seed, 0.08)
    return data.decode_window(image_bytes, begin[0], begin[1], size[0], size[1], r)

  def rows(image_bytes, top):
    height, width = tf.unstack(tf.image.extract_jpeg_shape(image_bytes)[:2])
    window = tf.stack([0 if top else height - 64, 0, 64, width])
    return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)

  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  images = tf.data.Dataset.from_tensor_slices((jpegs, seeds)).cache().with_options(options)

  def reduced(f):
    return lambda b, s: tf.cast(tf.reduce_max(tf.nest.flatten(f(b, s))[0]), tf.int32)

  datasets = {name: images.map(reduced(f)).batch(len(jpegs)) for name, f in operations.items()}
  best = dict.fromkeys(datasets, float("inf"))
  for round_index in range(args.rounds + 1):  # round 0 warms up (tracing, the image cache) and is not kept
    for name, dataset in datasets.items():
      start = time.perf_counter()
      for _ in dataset:
        pass
      if round_index:
        best[name] = min(best[name], (time.perf_counter() - start) / len(jpegs))

  baseline = best[next(iter(best))]
  print(f"# {cpu_model()}, 1 thread, {len(jpegs)} synthetic JPEGs, {r} px, best of {args.rounds} rounds, "
        f"{datetime.date.today()}, tensorflow {tf.__version__}")
  print(f"| {'operation':50s} | ms/image | images/s | baseline time / this |")
  print(f"| {'---':50s} | ---: | ---: | ---: |")
  for name, seconds in best.items():
    print(f"| {name:50s} | {seconds * 1e3:.2f} | {1 / seconds:,.0f} | {baseline / seconds:.2f} |")


if __name__ == "__main__":
  main()
