"""An experiment config file and its command-line overrides, for every command that takes `--config`.

  --config path/to/file.py[:arg] [--config.section.field=value ...]
  --config fashion_mnist[:arg]     # a packaged config by name: mnet_jax/configs/fashion_mnist.py

The file's `get_config(arg)` returns the base config (big_vision style: `arg` is a string such as
"alpha=0.5,resolution=32"); each `--config.field=value` then sets one existing field, parsed as the field's type.
`load_module` is the one way a config file is found and imported: `load` here, and `sweeps.grid` for sweep files.
Every mistake (a missing file, an unknown argument or field, a value of the wrong type) is a one-line ConfigError.
"""

import ast
import importlib.util
import os
import re

import ml_collections

from mnet_jax.errors import ConfigError

OVERRIDE_PREFIX = "--config."
PACKAGED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def packaged_names():
  """The configs inside the package (mnet_jax/configs/*.py with a get_config()), by name: "fashion_mnist", ..."""
  names = []
  for entry in sorted(os.listdir(PACKAGED_DIR)):
    name, ext = os.path.splitext(entry)
    if ext == ".py" and declares(os.path.join(PACKAGED_DIR, entry), "get_config"):
      names.append(name)
  return names


def declares(path, function):
  """Whether the Python file at `path` defines `function` at its top level (read, not imported)."""
  with open(path) as f:
    return re.search(rf"^def {function}\(", f.read(), re.MULTILINE) is not None


def find(path):
  """The file `path` names: the path itself, else a packaged config's name ("fashion_mnist" or "fashion_mnist.py");
  None when neither exists."""
  if os.path.isfile(path):
    return path
  name = path[:-len(".py")] if path.endswith(".py") else path
  if name in packaged_names():
    return os.path.join(PACKAGED_DIR, name + ".py")
  return None


def load_module(path, functions=("get_config",), alternatives=None):
  """The imported config file `path` (a path or a packaged config's name), which must define every one of
  `functions`. `alternatives` says what exists instead, for the one-line errors (default: the packaged configs)."""
  if alternatives is None:
    alternatives = "packaged configs: " + ", ".join(packaged_names())
  found = find(path)
  if found is None:
    raise ConfigError(f"config file {path!r} does not exist and names no packaged config; {alternatives}")
  module = import_file(found)
  for function in functions:
    if not callable(getattr(module, function, None)):
      raise ConfigError(f"{path!r} declares no {function}(); {alternatives}")
  return module


def import_file(path):
  """Imports a Python file by path (like ml_collections' config_flags)."""
  module_name = "config_file_" + re.sub(r"\W", "_", os.path.abspath(path))
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def parse_overrides(items):
  """("field", "text") pairs from command-line items "--config.field=value"; anything else is a one-line error."""
  command_line = []
  for item in items:
    field, has_value, text = item.partition("=")
    if not field.startswith(OVERRIDE_PREFIX) or not has_value:
      raise ConfigError(f"unrecognized argument {item!r}; config fields are overridden as --config.field=value")
    command_line.append((field[len(OVERRIDE_PREFIX):], text))
  return command_line


def load(spec, command_line=()):
  """The locked config of "path.py[:arg]" (or "name[:arg]", a packaged config) with the command line's
  ("field", "text") overrides applied."""
  path, _, arg = spec.partition(":")
  module = load_module(path)
  config = module.get_config(arg or None)
  set_fields(config, {dotted: parse_value(config, dotted, text) for dotted, text in command_line}, "the command line")
  config.lock()
  return config


def field_type(config, dotted):
  """The type of config field `dotted` ("optim.base_learning_rate"); a one-line error when there is none."""
  *parents, leaf = dotted.split(".")
  node = config
  for i, key in enumerate(parents):
    if not isinstance(node, ml_collections.ConfigDict) or key not in node:
      raise ConfigError(f"config field {'.'.join(parents[:i + 1])!r} does not exist (overriding {dotted!r})")
    node = node[key]
  if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
    raise ConfigError(f"config field {dotted!r} does not exist")
  return node.get_type(leaf)


def parse_value(config, dotted, text):
  """Command-line text for field `dotted`, as the field's type: strings stay strings, the rest are literals."""
  kind = field_type(config, dotted)
  if kind is str:
    return text
  if kind is bool:
    if text.lower() not in ("true", "false", "1", "0"):
      raise ConfigError(f"--config.{dotted}={text!r} is not a boolean; allowed: true, false")
    return text.lower() in ("true", "1")
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    if kind is type(None):  # a placeholder without a type: keep the text
      return text
    raise ConfigError(f"--config.{dotted}={text!r} is not a valid {kind.__name__}") from None


def set_fields(config, values, source):
  """Sets dotted fields of config; unknown fields and wrong types are one-line errors naming `source`."""
  for dotted, value in values.items():
    field_type(config, dotted)
    try:
      config.update_from_flattened_dict({dotted: value})
    except (TypeError, ValueError) as e:
      raise ConfigError(f"{source} sets {dotted}={value!r}, which the field does not take: {e}") from None
