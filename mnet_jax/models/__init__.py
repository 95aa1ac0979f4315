"""The model families and the one place that maps `config.model.name` to them.

  models.NAMES                                   # ('mobilenet_v1', 'mobilenet_v2', 'mobilenet_v3_large', ...)
  models.family(name) -> Family                  # ConfigError for an unknown name
  models.create(name, alpha, num_classes, **options) -> a Flax module; module.layers() is its layer spec
  models.layer_spec(name, alpha, num_classes, **options) -> tuple of spec.Layer

`options` are the module's other fields (stem_stride, dtype, kernels, ...; V1's variant, kernel_sizes, ...; V3's
minimalistic). Adding a family: its file in this package (the spec as data, `architecture()`, the module,
`keras_names()`), one entry below (docs/families.md).
"""

import dataclasses
from typing import Any, Callable

from mnet_jax.errors import ConfigError
from mnet_jax.models import mobilenet_v1, mobilenet_v2, mobilenet_v3
from mnet_jax.models.mobilenet_v1 import (  # noqa: F401 (the V1 names other modules import from here)
    ACTIVATIONS, BLOCKS, MIN_RESOLUTION, VARIANTS, MobileNetV1, architecture)
from mnet_jax.models.network import DTYPES  # noqa: F401
from mnet_jax.models.mobilenet_v2 import MobileNetV2  # noqa: F401
from mnet_jax.models.mobilenet_v3 import MobileNetV3  # noqa: F401
from mnet_jax.models.spec import Layer, check_alpha, check_resolution  # noqa: F401


@dataclasses.dataclass(frozen=True)
class Family:
  """name: config.model.name; module: the Flax module class; fixed: fields the name fixes (V3's size);
  keras_class: the keras.applications class with the same layers; keras_names(layers): our layer name -> its Keras
  layers (convert.py)."""

  name: str
  module: Any
  fixed: tuple
  keras_class: str
  keras_names: Callable


FAMILIES = {f.name: f for f in (
    Family("mobilenet_v1", MobileNetV1, (), "MobileNet", mobilenet_v1.keras_names),
    Family("mobilenet_v2", MobileNetV2, (), "MobileNetV2", mobilenet_v2.keras_names),
    Family("mobilenet_v3_large", MobileNetV3, (("size", "large"),), "MobileNetV3Large", mobilenet_v3.keras_names),
    Family("mobilenet_v3_small", MobileNetV3, (("size", "small"),), "MobileNetV3Small", mobilenet_v3.keras_names),
)}
NAMES = tuple(FAMILIES)


def family(name):
  if name not in FAMILIES:
    raise ConfigError(f"model name={name!r} is unknown; allowed: {', '.join(NAMES)}")
  return FAMILIES[name]


def create(name, alpha=1.0, num_classes=1000, **options):
  """The Flax module of family `name`; an option the family does not take is a ConfigError."""
  chosen = family(name)
  fields = {f.name for f in dataclasses.fields(chosen.module)} - {"parent", "name", *dict(chosen.fixed)}
  unknown = sorted(set(options) - fields)
  if unknown:
    raise ConfigError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not an option of {name}; "
                      f"allowed: {', '.join(sorted(fields - {'alpha', 'num_classes'}))}")
  return chosen.module(alpha=alpha, num_classes=num_classes, **dict(chosen.fixed), **options)


def layer_spec(name, alpha=1.0, num_classes=1000, **options):
  """The layer spec (a tuple of spec.Layer) of family `name`: what the module builds and the counter counts."""
  return create(name, alpha, num_classes, **options).layers()


# Options one family or another takes, with the value that means "not used" to the others.
FAMILY_OPTIONS = {"variant": "standard", "min_depth": 8, "kernel_sizes": (3,), "kernel_split": "equal",
                  "activation": "relu6", "minimalistic": False, "pointwise_groups": 1,
                  "channel_shuffle": False, "depthwise_factorization": "none"}


def model_options(name, **given):
  """Of `given` (FAMILY_OPTIONS' fields), the ones family `name` takes; one it does not take, off its default, is a
  ConfigError."""
  chosen = family(name)
  fields = {f.name for f in dataclasses.fields(chosen.module)} - {*dict(chosen.fixed)}
  options = {}
  for key, value in given.items():
    value = tuple(value) if isinstance(value, list) else value
    if key in fields:
      options[key] = value
    elif value != FAMILY_OPTIONS[key]:
      takers = [n for n, f in FAMILIES.items() if key in {d.name for d in dataclasses.fields(f.module)}]
      raise ConfigError(f"{key}={value!r} is not allowed for {name}; allowed: {FAMILY_OPTIONS[key]!r} "
                        f"({key} is an option of {', '.join(takers)} only)")
  return options
