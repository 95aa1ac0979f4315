"""The C++ CPU kernels of cpu_kernels.cc (depthwise forward and gradients, BatchNorm statistics), called through XLA's FFI.

The source is compiled on first use with the system's C++ compiler (`$CXX`, else g++) into a cache directory
(`$MNET_JAX_CACHE`, else ~/.cache/mnet_jax), once per source, flags, jax version and CPU model.
"""

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import subprocess
import tempfile
import warnings

import jax
import jax.numpy as jnp

from mnet_jax.machine import cpu_model

SOURCE = pathlib.Path(__file__).with_name("cpu_kernels.cc")
TARGETS = ("DepthwiseForward", "DepthwiseInputGrad", "DepthwiseKernelGrad", "ChannelMoments", "BatchNormActGradSums")


def compiler_flags():
  return ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{jax.ffi.include_dir()}"]


@functools.cache
def library_error():
  """Compiles, loads and registers the kernels once; returns None, or why they cannot be used (no compiler, ...)."""
  compiler = os.environ.get("CXX", "g++")
  # The CPU's model in the key: a cache shared by different machines keeps one -march=native build each.
  key = hashlib.sha256("\n".join([SOURCE.read_text(), compiler, *compiler_flags(), jax.__version__,
                                   platform.machine(), cpu_model()]).encode()).hexdigest()[:16]
  cache = cache_root()
  library = cache / f"cpu_kernels-{key}.so"
  if not library.exists():
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:  # concurrent builds each write their own file
      built = pathlib.Path(tmp) / library.name
      try:
        result = subprocess.run([compiler, *compiler_flags(), str(SOURCE), "-o", str(built)],
                                capture_output=True, text=True)
      except FileNotFoundError:
        return f"no C++ compiler {compiler!r} (set $CXX)"
      if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "error" in line] or [f"exit {result.returncode}"]
        return f"{compiler} failed on {SOURCE.name}: {errors[0].strip()}"
      os.replace(built, library)
  try:
    handle = ctypes.cdll.LoadLibrary(str(library))
  except OSError as e:
    return f"cannot load {library} ({e}); delete it to rebuild"
  for target in TARGETS:
    jax.ffi.register_ffi_target(f"mnet_{target}", jax.ffi.pycapsule(getattr(handle, f"Mnet{target}")),
                                platform="cpu")
  return None


def cache_root():
  """Where this project keeps what it builds: $MNET_JAX_CACHE, else ~/.cache/mnet_jax."""
  return pathlib.Path(os.environ.get("MNET_JAX_CACHE", pathlib.Path.home() / ".cache" / "mnet_jax"))


@functools.cache
def usable():
  """Whether kernels='auto' picks them: on CPU, in a process that sees one device (XLA cannot split a custom
  call over several devices, it would gather the batch), when they compile (else a warning, once)."""
  if jax.default_backend() != "cpu" or jax.device_count() > 1:
    return False
  if (error := library_error()) is not None:
    warnings.warn(f"the C++ CPU kernels are unavailable ({error}); using the slower portable kernels")
    return False
  return True


def call(target, result_shapes, *arrays, **attributes):
  """Calls kernel `target` on float32 copies of `arrays`; result_shapes: one shape or a tuple of shapes."""
  if (error := library_error()) is not None:
    raise RuntimeError(f"the C++ CPU kernels are unavailable: {error}")
  if isinstance(result_shapes[0], int):
    results = jax.ShapeDtypeStruct(result_shapes, jnp.float32)
  else:
    results = tuple(jax.ShapeDtypeStruct(shape, jnp.float32) for shape in result_shapes)
  return jax.ffi.ffi_call(f"mnet_{target}", results)(*(a.astype(jnp.float32) for a in arrays), **attributes)
