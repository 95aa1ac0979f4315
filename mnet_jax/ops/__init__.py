"""The kernels the model is built from: depthwise, pointwise, the stem conv, BatchNorm, and the C++ CPU kernels.

One field, `kernels` (the model's and `config.model.kernels`), chooses how every layer computes:
- 'portable': XLA's grouped convolution for the depthwise conv, nn.BatchNorm's arithmetic in plain JAX, plain
  dots for the pointwise convs, XLA's convolution for the stem: what runs on GPU and TPU (and on any CPU).
- 'cpu': the forms measured fastest on XLA:CPU (docs/performance.md): the C++ kernels of cpu_kernels.cc for the
  depthwise gradients and BatchNorm's sums, the pointwise conv's hand-written gradient, the stem as a matmul of
  patches. Only in a process that sees one CPU device: XLA cannot split a custom call over several devices.
- 'auto': 'cpu' in a single-device CPU process where the C++ kernels compile, 'portable' anywhere else.
Both sets hold the same variables and compute the same function up to float rounding (tests/test_kernels.py).
"""

KERNELS = ("auto", "portable", "cpu")


def resolve_kernels(kernels):
  """'portable' or 'cpu': what `kernels` stands for in this process; a ConfigError for a choice it cannot run."""
  import jax
  from mnet_jax.errors import ConfigError
  from mnet_jax.ops import cpu_kernels
  if kernels not in KERNELS:
    raise ConfigError(f"kernels={kernels!r} is unknown; allowed: {', '.join(KERNELS)}")
  if kernels == "auto":
    return "cpu" if cpu_kernels.usable() else "portable"
  if kernels == "cpu":
    if jax.default_backend() != "cpu":
      raise ConfigError(f"kernels='cpu' runs on CPU only, not on {jax.default_backend()!r}; use auto or portable")
    if jax.device_count() > 1:
      raise ConfigError(f"kernels='cpu' needs a process that sees one device, this one sees {jax.device_count()} "
                        "(XLA would gather the batch for each C++ kernel); use auto or portable")
    if (error := cpu_kernels.library_error()) is not None:
      raise ConfigError(f"kernels='cpu' is unavailable: {error}; use auto or portable")
  return kernels
