"""mnet_jax: MobileNet V1 width and resolution sweeps in JAX/Flax."""
