"""Depthwise k x k convolution (any odd k), one filter per channel, with TF 'SAME' padding, and MixConv's mixed
form (`mixed_depthwise_conv`: contiguous channel groups, each with its own kernel size, outputs concatenated).

Every implementation takes the same kernel of shape (k, k, 1, C) (the layout of a conv with
feature_group_count=C), so parameters and checkpoints do not depend on the choice:

- `xla`: a grouped convolution with feature_group_count=C, the reference form.
- `shifted`: k*k shifted, strided slices of the padded input, each scaled per channel and summed;
  its gradient is whatever JAX's autodiff makes of that.
- `shifted_vjp`: the same forward with a hand-written backward, also as shifted multiply-adds: the
  input gradient is a stride-1 correlation of the (dilated) output gradient with the flipped kernel, the
  kernel gradient k*k products of input windows and output gradient, reduced.
- `cpu_kernel`: the input and kernel gradients as C++ loops (cpu_kernels.cc, compiled on first use, see
  cpu_kernels.py) called through XLA's FFI, and the forward: `shifted`'s for 3x3 kernels (fused with the BatchNorm
  around it), a C++ loop for larger ones; CPU only.
- `auto`: the kernel set's (`kernels`, ops/__init__.py): `cpu_kernel` for 'cpu', `xla` for 'portable'. The others
  are there for ablations (`config.model.depthwise_impl`) and tests.

XLA:CPU lowers grouped convolutions, and their transposes, to slow generic loops; see docs/performance.md.

`spatial_depthwise_conv` is the spatially separable form (a k x 1 depthwise conv with the vertical stride, then a
1 x k one with the horizontal stride): XLA's grouped convolution for `xla`, k shifted multiply-adds each (autodiff
gradient) for every other implementation.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mnet_jax.errors import ConfigError
from mnet_jax.ops import cpu_kernels


def same_padding(size, kernel_size, stride):
  """TF 'SAME' padding (low, high) of one spatial axis: the extra pixel goes bottom/right."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel_size - size, 0)
  return total // 2, total - total // 2


def depthwise_xla(x, kernel, stride):
  """The reference form: a grouped convolution with one group per channel."""
  return lax.conv_general_dilated(
      x, kernel, window_strides=(stride, stride), padding="SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])


def windows(x, k, stride, out_h, out_w):
  """The k*k strided windows of x (N, H, W, C) that output position (i, j) of a 'VALID' correlation reads."""
  n, _, _, c = x.shape
  for i in range(k):
    for j in range(k):
      yield i, j, lax.slice(
          x, (0, i, j, 0), (n, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, c), (1, stride, stride, 1))


def shifted_valid(x, taps, stride, out_h, out_w):
  """sum over (i, j) of window(i, j) * taps[i, j]: a 'VALID' depthwise correlation; taps is (k, k, C).

  Accumulates in float32 whatever the input dtype (as XLA's convolution does), then casts back.
  """
  out = None
  for i, j, window in windows(x, taps.shape[0], stride, out_h, out_w):
    term = window.astype(jnp.float32) * taps[i, j].astype(jnp.float32)[None, None, None, :]
    out = term if out is None else out + term
  return out.astype(x.dtype)


def pad_same(x, k, stride):
  _, h, w, _ = x.shape
  return jnp.pad(x, ((0, 0), same_padding(h, k, stride), same_padding(w, k, stride), (0, 0)))


def depthwise_shifted(x, kernel, stride):
  """k*k shifted, strided slices of the padded input, each scaled per channel and summed."""
  _, h, w, _ = x.shape
  return shifted_valid(pad_same(x, kernel.shape[0], stride), kernel[:, :, 0], stride, -(-h // stride), -(-w // stride))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_shifted_vjp(x, kernel, stride):
  """`shifted`'s forward with a backward written as shifted multiply-adds too."""
  return depthwise_shifted(x, kernel, stride)


def _shifted_forward_saving_inputs(x, kernel, stride):
  """`shifted_vjp`'s forward: `shifted`, keeping x and the kernel for the backward."""
  return depthwise_shifted(x, kernel, stride), (x, kernel)


def _shifted_vjp_backward(stride, residuals, grad):
  x, kernel = residuals
  k = kernel.shape[0]
  _, h, w, _ = x.shape
  out_h, out_w = grad.shape[1:3]
  (top, _), (left, _) = same_padding(h, k, stride), same_padding(w, k, stride)
  # Input gradient: dx[a] = sum_i g_dilated[a + top - i] * kernel[i], a stride-1 correlation of the output
  # gradient (dilated by the stride, padded so every window exists) with the kernel flipped in both axes.
  zero = jnp.zeros((), grad.dtype)
  dilated = lax.pad(grad, zero, ((0, 0, 0),
                                 (k - 1 - top, h + top - (out_h - 1) * stride - 1, stride - 1),
                                 (k - 1 - left, w + left - (out_w - 1) * stride - 1, stride - 1),
                                 (0, 0, 0)))
  grad_x = shifted_valid(dilated, kernel[::-1, ::-1, 0], 1, h, w)
  # Kernel gradient: each tap is its input window times the output gradient, summed over batch and space.
  taps = [jnp.sum(window.astype(jnp.float32) * grad.astype(jnp.float32), axis=(0, 1, 2))
          for _, _, window in windows(pad_same(x, k, stride), k, stride, out_h, out_w)]
  grad_kernel = jnp.stack(taps).reshape(kernel.shape).astype(kernel.dtype)
  return grad_x, grad_kernel


depthwise_shifted_vjp.defvjp(_shifted_forward_saving_inputs, _shifted_vjp_backward)


def cpu_kernel_call(target, result_shape, a, b, stride, padding):
  (top, _), (left, _) = padding
  return cpu_kernels.call(target, result_shape, a, b, stride=np.int64(stride), pad_top=np.int64(top),
                          pad_left=np.int64(left))


SHIFTED_FORWARD_MAX_KERNEL = 3  # cpu_kernel's forward: `shifted` up to this size, the C++ kernel above it


def cpu_kernel_forward(x, kernel, stride):
  """`shifted` for a 3x3 kernel, which XLA fuses with the BatchNorm around it; the C++ forward for larger ones,
  whose k*k slices XLA is slow to compile and to run (docs/mixconv.md)."""
  k = kernel.shape[0]
  if k <= SHIFTED_FORWARD_MAX_KERNEL:
    return depthwise_shifted(x, kernel, stride)
  n, h, w, c = x.shape
  out = cpu_kernel_call("DepthwiseForward", (n, -(-h // stride), -(-w // stride), c), x, kernel.reshape(k, k, c),
                        stride, (same_padding(h, k, stride), same_padding(w, k, stride)))
  return out.astype(x.dtype)


def depthwise_cpu_kernel(x, kernel, stride):
  """The C++ kernels of cpu_kernels.cc for the gradients (and the forward of kernels larger than 3x3), in float32
  whatever the input dtype (as XLA's convolution accumulates)."""
  return _depthwise_cpu_kernel(x, kernel, stride, x.shape[1], x.shape[2])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise_cpu_kernel(x, kernel, stride, height, width):
  return cpu_kernel_forward(x, kernel, stride)


def _cpu_kernel_forward(x, kernel, stride, height, width):
  """Keeps the kernel and, for the kernel gradient, the input: padded for a 3x3 kernel (the same pad as the
  forward's, which XLA merges; saving x itself would make XLA write the BatchNorm's output twice, padded and not),
  as it is for larger kernels (the C++ forward pads as it reads)."""
  k = kernel.shape[0]
  saved = pad_same(x, k, stride) if k <= SHIFTED_FORWARD_MAX_KERNEL else x
  return cpu_kernel_forward(x, kernel, stride), (saved, kernel)


def _cpu_kernel_backward(stride, height, width, residuals, grad):
  saved, kernel = residuals
  k, _, _, c = kernel.shape
  padding = same_padding(height, k, stride), same_padding(width, k, stride)
  x_shape = (saved.shape[0], height, width, c)
  grad_x = cpu_kernel_call("DepthwiseInputGrad", x_shape, grad, kernel.reshape(k, k, c), stride, padding)
  saved_padding = ((0, 0), (0, 0)) if k <= SHIFTED_FORWARD_MAX_KERNEL else padding
  grad_kernel = cpu_kernel_call("DepthwiseKernelGrad", (k, k, c), saved, grad, stride, saved_padding)
  return grad_x.astype(saved.dtype), grad_kernel.reshape(kernel.shape).astype(kernel.dtype)


_depthwise_cpu_kernel.defvjp(_cpu_kernel_forward, _cpu_kernel_backward)

def depthwise_rect_xla(x, kernel, strides):
  """A depthwise conv with a kh x kw kernel (kh, kw, 1, C) and strides (vertical, horizontal), TF 'SAME' padding."""
  return lax.conv_general_dilated(x, kernel, window_strides=strides, padding="SAME",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])


def depthwise_rect_shifted(x, kernel, strides):
  """`depthwise_rect_xla` as kh * kw shifted, strided slices of the padded input scaled per channel and summed
  (accumulated in float32)."""
  n, h, w, c = x.shape
  kh, kw = kernel.shape[:2]
  (sh, sw), out_h, out_w = strides, -(-h // strides[0]), -(-w // strides[1])
  padded = jnp.pad(x, ((0, 0), same_padding(h, kh, sh), same_padding(w, kw, sw), (0, 0)))
  out = None
  for i in range(kh):
    for j in range(kw):
      window = lax.slice(padded, (0, i, j, 0), (n, i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1, c),
                         (1, sh, sw, 1))
      term = window.astype(jnp.float32) * kernel[i, j, 0].astype(jnp.float32)[None, None, None, :]
      out = term if out is None else out + term
  return out.astype(x.dtype)


def spatial_depthwise_conv(x, kernel_v, kernel_h, stride, impl):
  """x convolved with kernel_v (k, 1, 1, C) at stride (stride, 1), then with kernel_h (1, k, 1, C) at (1, stride);
  `impl` 'xla' takes XLA's grouped convolution, any other the shifted multiply-adds."""
  form = depthwise_rect_xla if impl == "xla" else depthwise_rect_shifted
  return form(form(x, kernel_v, (stride, 1)), kernel_h, (1, stride))


IMPLEMENTATIONS = {"xla": depthwise_xla, "shifted": depthwise_shifted, "shifted_vjp": depthwise_shifted_vjp,
                   "cpu_kernel": depthwise_cpu_kernel}
CHOICES = ("auto", *IMPLEMENTATIONS)


def check_impl(impl):
  if impl not in CHOICES:
    raise ConfigError(f"depthwise_impl={impl!r} is unknown; allowed: {', '.join(CHOICES)}")
  if impl == "cpu_kernel":
    if jax.default_backend() != "cpu":
      raise ConfigError(f"depthwise_impl='cpu_kernel' runs on CPU only, not on {jax.default_backend()!r}; "
                        f"allowed there: auto, xla, shifted, shifted_vjp")
    if (error := cpu_kernels.library_error()) is not None:
      raise ConfigError(f"depthwise_impl='cpu_kernel' is unavailable: {error}; use auto or shifted_vjp")


def resolve_impl(impl, kernels):
  """The implementation name that `impl` stands for with the resolved kernel set `kernels` ('portable' or 'cpu')."""
  check_impl(impl)
  if impl == "auto":
    return "cpu_kernel" if kernels == "cpu" else "xla"
  return impl


def depthwise_conv(x, kernel, stride, impl):
  """x (N, H, W, C) convolved with kernel (k, k, 1, C) by implementation `impl` (not 'auto')."""
  return IMPLEMENTATIONS[impl](x, kernel, stride)


def mixed_depthwise_conv(x, kernels, stride, impl):
  """MixConv: x's channels split into contiguous groups, group i convolved with kernels[i] (k_i, k_i, 1, C_i),
  the outputs concatenated in group order. One kernel is a plain depthwise conv."""
  if len(kernels) == 1:
    return depthwise_conv(x, kernels[0], stride, impl)
  bounds = np.cumsum([0] + [kernel.shape[-1] for kernel in kernels])
  return jnp.concatenate([depthwise_conv(x[..., lo:hi], kernel, stride, impl)
                          for lo, hi, kernel in zip(bounds[:-1], bounds[1:], kernels)], axis=-1)
