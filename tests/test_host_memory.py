"""keep_freed_memory() stops XLA:CPU's per-call buffers from being faulted in anew on every call."""

import os
import subprocess
import sys

import pytest

from mnet_jax import host_memory

# A jitted function whose temporary buffer (64 MiB, 16,384 pages) is above glibc's largest mmap threshold.
# Prints the page faults per call once the allocator has settled (glibc's heap grows over the first calls), the
# fewest of four rounds of 5 calls: a round can fault for reasons outside the allocator (seen once in a full parallel
# suite, 6,553 faults a call; cause not established).
FAULTS_PER_CALL = """
import resource, sys
from mnet_jax import host_memory
applied = host_memory.keep_freed_memory() if sys.argv[1] == "keep" else False
import jax, jax.numpy as jnp
x = jnp.ones((8192, 2048))
f = jax.jit(lambda x: jnp.cumsum(jnp.exp(x), axis=0)[::2].sum())
for _ in range(20):
  f(x).block_until_ready()
rounds = []
for _ in range(4):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(5):
    f(x).block_until_ready()
  rounds.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
print(applied, min(rounds))
"""


def faults_per_call(mode):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-c", FAULTS_PER_CALL, mode], capture_output=True, text=True, env=env)
  assert result.returncode == 0, result.stderr
  applied, faults = result.stdout.split()
  return applied == "True", int(faults)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc options")
def test_freed_memory_is_reused_across_calls():
  applied, faults = faults_per_call("keep")
  assert applied
  assert faults < 100
  _, faults_without = faults_per_call("default")
  assert faults_without >= 16384  # every page of the 64 MiB buffer, every call: what keep_freed_memory avoids


@pytest.mark.parametrize("platforms, on_cpu", [("cpu", True), ("cpu,cuda", True), ("cuda", False), ("tpu,cpu", False)])
def test_left_off_when_jax_runs_on_an_accelerator(monkeypatch, platforms, on_cpu):
  monkeypatch.setenv("JAX_PLATFORMS", platforms)
  assert host_memory.jax_will_run_on_cpu() is on_cpu
