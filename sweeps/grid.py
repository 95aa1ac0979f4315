"""A sweep: a config file's base config and the cells its `sweep(add, arg)` declares, each with its own workdir.

A sweep file (experiments/table6.py, ...) has `get_config(arg)` (the base config) and `sweep(add, arg)`, which calls
`add(**overrides)` once per cell, over any config field (dotted names via `add(**{"optim.x": 1})`); `arg` is the text
after the ":" of `--config path.py:arg`, or None, and an argument the file does not take is a one-line ConfigError.
A cell's config is the base config, then the command line's `--config.field=value` overrides, then the cell's.
Its workdir name is deterministic: `a{alpha}_r{resolution}`, then `_{field}={value}` for every other field the
cell sets to a value that differs from the base config, so the same cell in two sweeps has the same name.
"""

import dataclasses
import glob
import inspect
import json
import os
import re

import ml_collections

from mnet_jax import config_file
from mnet_jax.config_file import parse_value, set_fields
from mnet_jax.errors import ConfigError
from mnet_jax.workdir import write_atomically

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")
SWEEP_FILE = "sweep.json"  # written into the sweep's workdir; the report reads the cell list from it


@dataclasses.dataclass(frozen=True)
class Cell:
  index: int
  name: str
  overrides: dict  # what the sweep's add() set, dotted field -> value
  config: ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Sweep:
  name: str  # also the wandb group of its runs
  spec: str  # "path/to/sweep.py[:arg]", the path absolute
  command_line: tuple  # ("field", "text") pairs from --config.field=text
  cells: tuple
  seeds: int = 1  # each declared cell trained with seeds config.seed, config.seed + 1, ...

  def check_index(self, index):
    if not 0 <= index < len(self.cells):
      raise ConfigError(f"--cell {index} is out of range: sweep {self.name!r} has {len(self.cells)} cells "
                        f"(0-{len(self.cells) - 1}); --list prints them")
    return self.cells[index]


def sweep_files(directory):
  """The files of `directory` that declare a sweep."""
  return [os.path.basename(path) for path in sorted(glob.glob(os.path.join(directory, "*.py")))
          if config_file.declares(path, "sweep")]


def load_module(path):
  """The sweep file at `path`, imported by config_file's loader; it must define get_config(arg) and
  sweep(add, arg)."""
  where = os.path.dirname(path) or "."
  if not sweep_files(where):  # a mistyped directory, or a config's: name the checkout's sweeps
    where = os.path.relpath(EXPERIMENTS) if os.path.isdir(EXPERIMENTS) else EXPERIMENTS
  available = sweep_files(where)
  module = config_file.load_module(path, ("get_config", "sweep"),
                                   f"sweeps in {where}/: {', '.join(available) if available else 'none'}")
  try:
    inspect.signature(module.sweep).bind(None, None)
  except TypeError:
    raise ConfigError(f"{path!r} declares sweep{inspect.signature(module.sweep)}; a sweep file declares "
                      "sweep(add, arg), arg being its --config argument (None without one)") from None
  return module


def format_value(value):
  if isinstance(value, (tuple, list)):  # (3, 5, 7) -> 3-5-7
    return "-".join(format_value(v) for v in value)
  text = f"{value:g}" if isinstance(value, float) else str(value)
  return re.sub(r"[^A-Za-z0-9._=+-]", "-", text)


def cell_name(config, overrides, base):
  parts = [f"a{format_value(float(config.alpha))}", f"r{config.resolution}"]
  for dotted, value in overrides.items():
    if dotted not in ("alpha", "resolution") and value != flat_get(base, dotted):
      parts.append(f"{dotted}={format_value(value)}")
  return "_".join(parts)


def flat_get(config, dotted):
  node = config
  for key in dotted.split("."):
    node = node[key]
  return node


def sweep_name(path, arg):
  stem = os.path.splitext(os.path.basename(path))[0]
  return stem + (f"_{format_value(arg)}" if arg else "")


def load(spec, command_line=(), seeds=1):
  """The Sweep of "path.py[:arg]" with the command line's (field, text) overrides applied to every cell, each
  declared cell repeated with `seeds` seeds (config.seed, config.seed + 1, ...; every cell's first seed first)."""
  path, _, arg = spec.partition(":")
  arg = arg or None
  module = load_module(path)
  path = os.path.abspath(module.__file__)
  name = sweep_name(path, arg)
  requests = []
  module.sweep(lambda **overrides: requests.append(overrides), arg)
  if not requests:
    raise ConfigError(f"sweep {name!r} declares no cells: its sweep(add, arg) never calls add()")

  base = module.get_config(arg)
  command_values = {dotted: parse_value(base, dotted, text) for dotted, text in command_line}
  set_fields(base, command_values, "the command line")
  swept = sorted({dotted for overrides in requests for dotted in overrides})
  for dotted in swept:
    if dotted in command_values:
      raise ConfigError(f"--config.{dotted} cannot be overridden: sweep {name!r} sets it in every cell")
  if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
    raise ConfigError(f"--seeds {seeds!r} is not allowed: it must be an integer >= 1")
  if seeds > 1:
    if "seed" in swept:
      raise ConfigError(f"--seeds {seeds} cannot be used with sweep {name!r}: its cells set seed themselves")
    requests = [dict(overrides, seed=base.seed + k) for k in range(seeds) for overrides in requests]
  cells, names = [], {}
  for index, overrides in enumerate(requests):
    config = module.get_config(arg)
    set_fields(config, command_values, "the command line")
    set_fields(config, overrides, f"cell {index} of sweep {name!r}")
    cell = cell_name(config, overrides, base)
    if cell in names:
      raise ConfigError(f"sweep {name!r} declares cell {cell!r} twice (cells {names[cell]} and {index})")
    names[cell] = index
    if config.wandb.get("group") is None:
      config.wandb.group = name
    if config.wandb.get("name") is None:
      config.wandb.name = f"{name}/{cell}"
    cells.append(Cell(index, cell, dict(overrides), config))
  return Sweep(name, path + (f":{arg}" if arg else ""), tuple(command_line), tuple(cells), seeds)


def describe(sweep):
  """{"name", "spec", "command_line", "seeds", "cells": [{"index", "name", "overrides"}]}: what sweep.json holds."""
  return {"name": sweep.name, "spec": sweep.spec, "command_line": [list(pair) for pair in sweep.command_line],
          "seeds": sweep.seeds, "cells": [{"index": c.index, "name": c.name, "overrides": c.overrides} for c in sweep.cells]}


def write_description(workdir, sweep):
  """Writes workdir/sweep.json atomically (array jobs may write it at the same time; they write the same text)."""
  write_atomically(os.path.join(workdir, SWEEP_FILE), json.dumps(describe(sweep), indent=2, default=str))


def read_description(workdir):
  path = os.path.join(workdir, SWEEP_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)
