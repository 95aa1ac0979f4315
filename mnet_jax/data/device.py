"""On the device, inside the jitted train and eval steps: the uint8 batch becomes the model's float32 input."""

import jax


def crop_and_resize(images, boxes, flips, resolution):
  """Per-example antialiased crop of boxes (y, x, h, w) resized to resolution x resolution, then flipped where
  flips is set: float32 pixel values."""
  import jax.numpy as jnp

  def one(image, box, flip):
    scale = resolution / box[2:]
    out = jax.image.scale_and_translate(image.astype(jnp.float32), (resolution, resolution, image.shape[-1]),
                                        (0, 1), scale, -box[:2] * scale, method="linear", antialias=True)
    return jnp.where(flip, out[:, ::-1], out)

  return jax.vmap(one)(images, boxes, flips)


def on_device(batch, resolution):
  """The batch the model reads: crops of uint8-store batches, uint8 images of another size (Fashion-MNIST's
  28 x 28) resized with the antialiased bilinear filter, then pixels scaled to [-1, 1] in float32 and grey
  repeated to 3 channels (float32 batches pass unchanged). Runs at the start of the jitted train and eval steps."""
  import jax.numpy as jnp
  images = batch["images"]
  if "boxes" in batch:
    images = crop_and_resize(images, batch["boxes"], batch["flips"], resolution)
  elif images.dtype != jnp.uint8:
    return batch
  elif images.shape[1:3] != (resolution, resolution):
    images = jax.image.resize(images.astype(jnp.float32), (len(images), resolution, resolution, images.shape[-1]),
                              "linear", antialias=True)
  images = jnp.clip(images.astype(jnp.float32) / 127.5 - 1.0, -1.0, 1.0)
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  return {**{k: v for k, v in batch.items() if k not in ("boxes", "flips")}, "images": images}
