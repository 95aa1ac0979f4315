"""The set-up of a process that runs mnet_jax: `setup_process()`, called first by every entry point and the tests.

It must run before JAX starts its backend (the first `jax.devices()`, array or compilation): glibc's malloc
options only reach the threads XLA starts afterwards, and `jax.distributed.initialize` must precede the backend.
"""

import os
import sys

from mnet_jax import host_memory
from mnet_jax.errors import ConfigError


_done = False


class SetupTooLate(RuntimeError):
  """JAX's backend was started before setup_process()."""


def jax_backend_started():
  if "jax" not in sys.modules:
    return False
  from jax._src import xla_bridge
  return xla_bridge.backends_are_initialized()


def use_persistent_compilation_cache():
  """Keeps compiled programs on disk, in $MNET_JAX_CACHE/xla (else ~/.cache/mnet_jax/xla) unless
  jax_compilation_cache_dir is set already: a resumed run, a sweep cell run again or another run of the same
  shapes skips XLA's compilation, most of a short run on CPU."""
  import jax
  from mnet_jax.ops import cpu_kernels
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", str(cpu_kernels.cache_root() / "xla"))


def initialize_distributed():
  """jax.distributed.initialize() with the process count and index from JAX_NUM_PROCESSES and JAX_PROCESS_ID when
  set (jax reads only JAX_COORDINATOR_ADDRESS itself); otherwise jax detects them (SLURM, Open MPI, ...)."""
  import jax
  values = {}
  for name, key in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
    if os.environ.get(name):
      try:
        values[key] = int(os.environ[name])
      except ValueError:
        raise ConfigError(f"{name}={os.environ[name]!r} is not allowed: it must be an integer") from None
  try:
    jax.distributed.initialize(**values)
  except ValueError as e:
    raise ConfigError(f"--multihost: {e} (set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, or "
                      "run under SLURM)") from None


def hide_gpus_from_tensorflow():
  """TensorFlow only feeds data; keep it off the accelerators that JAX uses."""
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")


def setup_process(multihost=False):
  """Malloc mode for XLA:CPU, the persistent compilation cache, multi-host start (`multihost`: one process per
  host, from JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID or a cluster jax.distributed detects),
  and TensorFlow kept off the accelerators JAX uses. Raises SetupTooLate if JAX's backend started before the
  first call; later calls do nothing."""
  global _done
  if _done:
    return
  if jax_backend_started():
    raise SetupTooLate("setup_process() must run before JAX starts its backend (before the first jax.devices(), "
                       "array or jit call of the process)")
  host_memory.keep_freed_memory()
  import jax
  use_persistent_compilation_cache()
  if multihost:
    initialize_distributed()
  if not host_memory.jax_will_run_on_cpu():  # on a CPU-only machine TensorFlow has no GPU to take
    hide_gpus_from_tensorflow()
  _done = True
