from mnet_jax.models.mobilenet_v1 import (
    ACTIVATIONS, BLOCKS, DTYPES, MIN_RESOLUTION, VARIANTS, Layer, MobileNetV1, architecture,
    check_alpha, check_resolution)
