"""setup_process() runs before JAX starts its backend, in the tests as in every entry point, or refuses."""

import subprocess
import sys

import jax

from mnet_jax import process

LATE = """
import jax
jax.devices()
from mnet_jax import process
process.setup_process()
"""


def test_this_test_process_was_set_up_before_jax_started():
  assert process._done
  assert jax.config.jax_compilation_cache_dir


def test_setup_after_jax_started_is_refused():
  result = subprocess.run([sys.executable, "-c", LATE], capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "SetupTooLate: setup_process() must run before JAX starts its backend" in result.stderr
