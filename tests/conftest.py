from mnet_jax import process

process.setup_process()  # before JAX starts, as in the entry points

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
