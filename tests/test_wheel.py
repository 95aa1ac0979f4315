"""The package runs from a wheel installed into a fresh virtual environment, with no checkout in sight: count (and
its packaged paper tables), convert (a Keras MobileNet file built here) and one training step from a packaged config.

Offline and quick: the wheel is built without build isolation, and the heavy dependencies (jax, tensorflow, ...)
are the running interpreter's, made visible to the new environment by a .pth file. A .pth file's lines only
extend sys.path (the .pth files in the directory it names are not run), so the checkout's editable install of
mnet_jax cannot leak in; the test checks where mnet_jax comes from.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_FILES = ("pyproject.toml", "requirements.txt")  # pyproject.toml reads requirements.txt


def run(*args, cwd, timeout=600):
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
  result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
  return result.stdout


def build_wheel(tmp_path):
  """The wheel of a copy of the checkout's package (so the build leaves nothing in the checkout)."""
  source = tmp_path / "source"
  source.mkdir()
  for name in BUILD_FILES:
    shutil.copy(os.path.join(REPO, name), source)
  shutil.copytree(os.path.join(REPO, "mnet_jax"), source / "mnet_jax",
                  ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
  dist = tmp_path / "dist"
  run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist,
      source, cwd=tmp_path)
  wheels = glob.glob(str(dist / "mnet_jax-*.whl"))
  assert len(wheels) == 1, wheels
  return wheels[0]


def fresh_environment(tmp_path, wheel):
  """A new virtual environment with the wheel installed and this interpreter's site-packages behind it."""
  root = tmp_path / "env"
  venv.EnvBuilder(with_pip=False).create(root)
  python = str(root / "bin" / "python")
  site_packages = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).strip()
  ours = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
  with open(os.path.join(site_packages, "dependencies.pth"), "w") as f:
    f.write("".join(path + "\n" for path in ours))
  run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp_path)
  return root, python


def keras_mobilenet_h5(path, alpha, resolution):
  """keras.applications.MobileNet with random weights, saved in the official files' layout (Keras' legacy h5)."""
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  import h5py
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  import keras
  from keras.src.legacy.saving import legacy_h5_format
  model = keras.applications.MobileNet(alpha=alpha, input_shape=(resolution, resolution, 3), weights=None)
  with h5py.File(path, "w") as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.mark.slow
def test_installed_wheel_counts_converts_and_trains_without_the_checkout(tmp_path):
  wheel = build_wheel(tmp_path)
  root, python = fresh_environment(tmp_path, wheel)
  elsewhere = tmp_path / "elsewhere"  # the commands' working directory: no checkout in it or above it
  elsewhere.mkdir()

  where = json.loads(run(python, "-c", "import importlib.util, json, mnet_jax; print(json.dumps([mnet_jax.__file__, "
                         "[importlib.util.find_spec(m) is None for m in ('experiments', 'sweeps')]]))", cwd=elsewhere))
  assert where[0].startswith(str(root)), where
  assert where[1] == [True, True]  # the checkout's other top-level packages are not importable from here

  tables = run(python, "-m", "mnet_jax.count", "--paper", cwd=elsewhere)  # its figures are package data
  assert "Table 2" in tables and "568.74" in tables

  h5 = str(tmp_path / "mobilenet_2_5_128_tf.h5")
  keras_mobilenet_h5(h5, 0.25, 128)
  converted = elsewhere / "converted"
  run(python, "-m", "mnet_jax.convert", "--keras-h5", h5, "--alpha", "0.25", "--resolution", "128", "--out", converted,
      cwd=elsewhere)
  with open(converted / "config.json") as f:
    assert json.load(f)["alpha"] == 0.25
  assert os.path.isdir(converted / "checkpoints" / "0")

  trained = elsewhere / "trained"
  output = run(python, "-m", "mnet_jax.main", "--config", "fashion_mnist:runlocal", "--config.num_steps=1",
               "--config.log_every_steps=1", "--config.checkpoint_every_steps=1", "--config.wandb.mode=disabled",
               "--workdir", trained, cwd=elsewhere)
  assert "after 1 steps" in output, output
  with open(trained / "config.json") as f:
    assert json.load(f)["data"]["name"] == "fashion_mnist"
