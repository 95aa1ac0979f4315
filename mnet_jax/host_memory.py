"""Keep freed host memory in the process for reuse (glibc only), so that XLA:CPU's steps stop page-faulting.

XLA:CPU mallocs each step's temporary buffer (about 1 GB for MobileNet V1 at 224 px, batch 16) from one of its
own threads and frees it when the step ends. glibc serves a block that large from a thread's arena with a
fresh mmap, and frees it with munmap: every step then faults in every 4 KiB page anew (docs/performance.md).
With one arena, no mmap and no trimming of the heap's top, the next step's malloc gets back the pages the last
one freed.

It must run before JAX starts its backend (its threads take their arenas when they start). It is left off
where JAX will run on an accelerator: there the steps' buffers are on the device, and one arena would make
the input pipeline's many threads queue for glibc's lock.
"""

import ctypes
import importlib.metadata
import importlib.util
import os
import sys

# glibc's <malloc.h> option numbers.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_NEVER = -1  # as M_TRIM_THRESHOLD: never give the heap's top back to the OS (mallopt(3))


def jax_will_run_on_cpu() -> bool:
  """True when JAX_PLATFORMS asks for the CPU first, or when it is unset and no accelerator plugin is installed."""
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  if any(True for _ in importlib.metadata.entry_points(group="jax_plugins")):
    return False
  return not any(importlib.util.find_spec(name) for name in ("jax_plugins", "libtpu"))


def keep_freed_memory() -> bool:
  """Sets glibc's malloc to reuse freed memory when JAX runs on the CPU; returns whether it did."""
  if not sys.platform.startswith("linux") or not jax_will_run_on_cpu():
    return False
  libc = ctypes.CDLL(None)
  if not hasattr(libc, "gnu_get_libc_version"):  # musl and others have no mallopt options to set
    return False
  options = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER))
  return all(libc.mallopt(option, value) == 1 for option, value in options)
