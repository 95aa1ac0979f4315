"""What a measurement ran on: the CPU's model, the device, the commit of the code."""

import os
import platform
import subprocess


def cpu_model():
  """The CPU's model name from /proc/cpuinfo (e.g. 'AMD EPYC 7B13'), else what `platform` knows."""
  try:
    with open("/proc/cpuinfo") as cpuinfo:
      for line in cpuinfo:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def describe(device):
  """One line for a JAX device: the CPU's model and core count, or an accelerator's kind (e.g. 'NVIDIA H100')."""
  if device.platform == "cpu":
    return f"{cpu_model()}, {os.cpu_count()} cores"
  return device.device_kind


def code_commit(directory=os.path.dirname(os.path.abspath(__file__))):
  """The commit of the checkout holding `directory` (`git rev-parse --short HEAD`, "+dirty" when tracked files
  differ from it); "unknown" outside git."""
  def git(*args):
    return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=30)
  try:
    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
      return "unknown"
    return head.stdout.strip() + ("+dirty" if git("diff", "--quiet", "HEAD", "--").returncode == 1 else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"
