"""setup_process() runs before JAX starts its backend, in the tests as in every entry point, or refuses."""

import subprocess
import sys

import jax

from mnet_jax import process
from mnet_jax.ops import cpu_kernels

LATE = """
import jax
jax.devices()
from mnet_jax import process
process.setup_process()
"""


def test_this_test_process_was_set_up_before_jax_started():
  assert process._done
  # conftest.py called setup_process(): the persistent compilation cache points at mnet_jax's cache directory
  assert jax.config.jax_compilation_cache_dir == str(cpu_kernels.cache_root() / "xla")


def test_setup_after_jax_started_is_refused():
  result = subprocess.run([sys.executable, "-c", LATE], capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "SetupTooLate: setup_process() must run before JAX starts its backend" in result.stderr
