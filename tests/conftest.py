import os

# Every compiled program goes to the persistent compilation cache, however short its compilation (JAX's default
# keeps those of 1 s or more): the suite compiles thousands of small programs, op by op in its own processes and
# in each process it starts (which inherit this variable), and a warm cache skips them all.
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

from mnet_jax import process  # noqa: E402

process.setup_process()  # before JAX starts, as in the entry points

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # when JAX was imported before this file
