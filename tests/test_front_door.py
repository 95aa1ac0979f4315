"""The README's first command loads the demo sweep it promises; config files load by path or packaged name; every
command line answers a bad input with one line on stderr and a non-zero exit, with no traceback and nothing
written (the workdir a corrected command would use stays free)."""

import os
import subprocess
import sys

import pytest

from mnet_jax import config_file
from mnet_jax.errors import ConfigError
from sweeps import grid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED_ARGUMENT = {"distill.py": "teacher"}  # sweep files whose argument has no default
W = "{workdir}"  # replaced by a path inside the test's empty tmp_path

BAD_INPUTS = [
    ("mnet_jax.main", ["--config", "mnet_jax/configs/fashion_mnist.py:alpa=0.5", "--workdir", W],
     "config argument 'alpa' is unknown; allowed: alpha"),
    ("mnet_jax.main", ["--config", "mnet_jax/configs/fashion_mnist.py", "--config.model.nope=1", "--workdir", W],
     "config field 'model.nope' does not exist"),
    ("mnet_jax.main", ["--config", "mnet_jax/configs/fashion_mnist.py", "--config.recipe=paper", "--workdir", W],
     "config field 'recipe' does not exist"),
    ("mnet_jax.main", ["--config", "experiments/nope.py", "--workdir", W], "'experiments/nope.py' does not exist"),
    ("mnet_jax.main", ["--config", "fashion_mnst", "--workdir", W],
     "names no packaged config; packaged configs: fashion_mnist, imagenet, imagenet_eval"),
    ("sweeps.launch", ["--config", "experiments/demo.py:typo", "--workdir", W],
     "config argument 'typo' is unknown: experiments/demo.py takes no argument"),
    ("sweeps.launch", ["--config", "experiments/grid16.py:typo", "--workdir", W],
     "config argument 'typo' is unknown; allowed: data, runlocal, budget"),
    ("sweeps.launch", ["--config", "experiments/grid16.py:budget=week", "--workdir", W],
     "config argument budget='week' is unknown; allowed: full, demo"),
    ("sweeps.launch", ["--config", "experiments/ablations.py:data=imagenet,budget=demo", "--workdir", W],
     "budget=demo is Fashion-MNIST's CPU budget; data='imagenet' takes budget=full"),
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
@pytest.mark.slow
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


def test_demo_sweep_is_the_16_cell_grid_at_its_budget():
  sweep = grid.load(os.path.join(REPO, "experiments/demo.py"))
  assert sweep.name == "demo"
  assert [(c.config.alpha, c.config.resolution) for c in sweep.cells] == [
      (a, r) for a in (1.0, 0.75, 0.5, 0.25) for r in (56, 48, 40, 32)]
  assert [c.name for c in sweep.cells[:2]] == ["a1_r56", "a1_r48"]
  for cell in sweep.cells:
    config = cell.config
    assert (config.data.name, config.num_steps, config.batch_size, config.optim.warmup_steps) == (
        "fashion_mnist", 180, 128, 45)
    assert config.data.max_train_examples is None and config.data.max_eval_examples is None  # the whole splits
    assert config.wandb.mode == "disabled" and config.wandb.group == "demo"


@pytest.mark.parametrize("name", grid.sweep_files(os.path.join(REPO, "experiments")))
def test_every_sweep_file_takes_its_argument_in_both_functions_and_refuses_others(name):
  module = grid.load_module(os.path.join(REPO, "experiments", name))
  cells = []
  module.sweep(lambda **overrides: cells.append(overrides), None)
  assert cells
  if name in REQUIRED_ARGUMENT:  # no default exists: the one line names the argument to give
    with pytest.raises(ConfigError, match=f"{REQUIRED_ARGUMENT[name]}=''"):
      module.get_config(None)
  else:
    assert module.get_config(None).alpha > 0
  for call in (lambda: module.get_config("typo"), lambda: module.sweep(lambda **_: None, "typo")):
    with pytest.raises(ConfigError, match="config argument 'typo' is unknown"):
      call()


def test_a_sweep_with_the_one_argument_form_is_refused_in_one_line(tmp_path):
  path = tmp_path / "old.py"
  path.write_text("def get_config(arg=None):\n  return None\n\n\ndef sweep(add):\n  add(alpha=0.5)\n")
  with pytest.raises(ConfigError, match=r"declares sweep\(add\); a sweep file declares sweep\(add, arg\)"):
    grid.load(str(path))


def test_a_packaged_config_loads_by_name_as_by_path(tmp_path, monkeypatch):
  by_path = config_file.load(os.path.join(REPO, "mnet_jax/configs/fashion_mnist.py:runlocal"), [("seed", "3")])
  assert config_file.load("fashion_mnist:runlocal", [("seed", "3")]) == by_path
  assert config_file.load("fashion_mnist.py:runlocal", [("seed", "3")]) == by_path
  assert by_path.seed == 3 and by_path.alpha == 0.25
  assert config_file.packaged_names() == ["fashion_mnist", "imagenet", "imagenet_eval"]
  (tmp_path / "fashion_mnist.py").write_text("def get_config(arg=None):\n  return 'the file here'\n")
  monkeypatch.chdir(tmp_path)  # a file of that name in the working directory is what the path means
  assert config_file.load_module("fashion_mnist.py").get_config() == "the file here"
