from mnet_jax import host_memory

host_memory.keep_freed_memory()  # before JAX starts, as in the entry points

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
