"""Every command line answers a bad input with one line on stderr and a non-zero exit, with no traceback and nothing
written (the workdir a corrected command would use stays free)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W = "{workdir}"  # replaced by a path inside the test's empty tmp_path

BAD_INPUTS = [
    ("mnet_jax.main", ["--config", "mnet_jax/configs/fashion_mnist.py:alpa=0.5", "--workdir", W],
     "config argument 'alpa' is unknown; allowed: alpha"),
    ("mnet_jax.main", ["--config", "mnet_jax/configs/fashion_mnist.py", "--config.model.nope=1", "--workdir", W],
     "config field 'model.nope' does not exist"),
    ("mnet_jax.main", ["--config", "mnet_jax/configs/fashion_mnist.py", "--config.recipe=paper", "--workdir", W],
     "config field 'recipe' does not exist"),
    ("mnet_jax.main", ["--config", "experiments/nope.py", "--workdir", W], "'experiments/nope.py' does not exist"),
    ("mnet_jax.main", ["--workdir", W], "the following arguments are required: --config"),
    ("mnet_jax.main", ["--config", "mnet_jax/configs/fashion_mnist.py:alpha=0", "--workdir", W], "alpha=0.0 is not allowed"),
    ("mnet_jax.main", ["--config", "mnet_jax/configs/fashion_mnist.py", "--config.batch_size=abc", "--workdir", W],
     "--config.batch_size='abc' is not a valid int"),
    ("mnet_jax.main", ["--config", "mnet_jax/configs/fashion_mnist.py", "--config.checkpoint_every_steps=0",
                       "--workdir", W], "checkpoint_every_steps=0 is not allowed"),
    ("mnet_jax.main", ["--config", "mnet_jax/configs/fashion_mnist.py", "--workdir", W, "extra"],
     "unrecognized argument 'extra'"),
    ("mnet_jax.evaluate", ["--workdir", W], "cannot read the run's config"),
    ("mnet_jax.evaluate", [], "the following arguments are required: --workdir"),
    ("mnet_jax.convert", ["--keras-h5", "nope.h5", "--alpha", "1", "--resolution", "224", "--out", W],
     "--keras-h5 'nope.h5' is not a file"),
    ("mnet_jax.convert", ["--keras-h5", "nope.h5", "--alpha", "one", "--resolution", "224", "--out", W],
     "argument --alpha: invalid float value: 'one'"),
    ("mnet_jax.count", ["--alpha", "0"], "alpha=0.0 is not allowed"),
    ("mnet_jax.count", ["--variant", "nope"], "variant='nope' is unknown; allowed: standard"),
    ("mnet_jax.bench", ["--repeats", "0"], "--repeats=0 is not allowed"),
    ("mnet_jax.bench", ["--setting", "1,2"], "--setting '1,2' is not allowed"),
    ("sweeps.launch", ["--config", "experiments/grid16.py", "--workdir", W, "--parallel", "0"],
     "--parallel 0 is not allowed"),
    ("sweeps.launch", ["--config", "experiments/grid16.py", "--workdir", W, "--nope"], "unrecognized argument '--nope'"),
    ("sweeps.launch", ["--config", "experiments/grid16.py", "--workdir", W, "--config.model.nope=1"],
     "config field 'model.nope' does not exist"),
    ("sweeps.report", ["--workdir", W], "does not exist"),
    ("sweeps.report", [], "the following arguments are required: --workdir"),
    ("mnet_jax.prepare", ["--config", "mnet_jax/configs/imagenet.py:resolutoin=128", "--out", W],
     "config argument 'resolutoin' is unknown"),
    ("mnet_jax.prepare", ["--config", "mnet_jax/configs/imagenet.py", "--out", W, "--size", "100"],
     "--size 100 is smaller than resolution=224"),
    ("mnet_jax.prepare", ["--out", W], "the following arguments are required: --config"),
    ("mnet_jax.main", ["--config", "mnet_jax/configs/imagenet.py", "--config.data.input_mode=nope", "--workdir", W],
     "input_mode='nope' is unknown"),
]


@pytest.mark.parametrize("module, args, message", BAD_INPUTS,
                         ids=[f"{m}:{' '.join(a).replace(W, 'W')}" for m, a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, module, args, message):
  workdir = str(tmp_path / "workdir")
  env = {**os.environ, "PYTHONPATH": REPO}
  result = subprocess.run([sys.executable, "-m", module, *[a.replace(W, workdir) for a in args]], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert message in result.stderr, result.stderr
  assert os.listdir(tmp_path) == []
