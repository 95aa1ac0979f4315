"""User-facing errors: one clear line naming the bad value and what is allowed."""

import argparse
import functools
import sys


class ConfigError(ValueError):
  """A bad value from the user (config field, flag, file); printed as one line by the CLIs."""


class OneLineArgumentParser(argparse.ArgumentParser):
  """argparse, but a bad flag gives one line instead of usage plus error."""

  def error(self, message):
    sys.exit(f"{self.prog}: error: {message}")


def exit_on_config_error(main):
  """Wraps a CLI entry point so a ConfigError ends the program with one line, not a traceback."""

  @functools.wraps(main)
  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except ConfigError as e:
      sys.exit(f"error: {e}")

  return wrapped
