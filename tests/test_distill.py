"""Knowledge distillation on tiny Fashion-MNIST runs: a 40-px alpha-0.5 teacher trained once for the module, 32-px
alpha-0.25 students."""

import json
import os
import shutil

import pytest

from mnet_jax import config_file, distill, train, workdir
from mnet_jax.errors import ConfigError
from sweeps import grid
from tests.test_train import tiny_config, train_lines

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  path = tmp_path_factory.mktemp("teacher")
  train.train_and_evaluate(tiny_config(alpha=0.5, resolution=40, num_steps=96, checkpoint_every_steps=96,
                                       log_every_steps=96), str(path))
  return str(path)


def student_config(teacher, **overrides):
  config = tiny_config(**overrides)
  config.distill.teacher = teacher
  return config


@pytest.mark.slow
def test_distillation_raises_the_students_agreement_with_its_teacher(teacher, tmp_path):
  """With weight 1 the student learns from the teacher's outputs alone; with weight 0 (the same steps, seed and
  data, the teacher only watching) from the labels alone. Agreement is measured on 1024 test images."""
  finals = {}
  for weight in (0.0, 1.0):
    config = student_config(teacher, num_steps=128, checkpoint_every_steps=128, log_every_steps=32)
    config.data.max_eval_examples = 1024
    config.distill.weight = weight
    config.distill.temperature = 1.0  # T = 4 rose less within this budget (0.66 against 0.69 on 256 images)
    finals[weight] = train.train_and_evaluate(config, str(tmp_path / f"w{weight:g}"))
  # 0.668 against 0.626 here; the margin (20 images) stays above the float noise of another machine's reduction order.
  assert finals[1.0]["test_teacher_agreement"] > finals[0.0]["test_teacher_agreement"] + 0.02, finals
  lines = train_lines(tmp_path / "w1")
  assert {"distill_kl", "teacher_agreement"} <= set(lines[-1])
  with open(tmp_path / "w1" / "config.json") as f:
    recorded = json.load(f)["distill"]
  assert recorded["teacher"] == teacher
  assert recorded["teacher_checksum"] == distill.checksum(distill.latest_variables(teacher)[1])


@pytest.mark.slow
def test_a_distilled_run_resumes_bitwise_from_its_checkpoint(teacher, tmp_path):
  config = student_config(teacher, num_steps=6, checkpoint_every_steps=3, log_every_steps=1)
  whole = train.train_and_evaluate(config, str(tmp_path))
  whole_losses = [m["loss"] for m in train_lines(tmp_path)]
  # What a run killed between its step-3 and step-6 checkpoints leaves: no step 6, no final line.
  shutil.rmtree(tmp_path / "checkpoints" / "6")
  lines = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"final"' not in line]
  (tmp_path / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
  resumed = train.train_and_evaluate(config, str(tmp_path))
  for key in ("test_top1", "test_loss", "test_teacher_agreement", "num_examples"):
    assert resumed[key] == whole[key], key
  assert [m["loss"] for m in train_lines(tmp_path)] == whole_losses


def test_a_run_whose_teacher_changed_is_refused(teacher, tmp_path):
  changed = tmp_path / "teacher"
  shutil.copytree(teacher, changed)
  config = student_config(str(changed))
  run = tmp_path / "student"
  run.mkdir()
  workdir.write_config(distill.with_teacher_checksum(workdir.with_resolved_kernels(config), str(run)), str(run))
  (run / "metrics.jsonl").write_text("")  # a run has started
  recorded = (run / "config.json").read_text()
  _, variables = distill.latest_variables(str(changed))
  with open(os.path.join(variables, sorted(os.listdir(variables))[0]), "ab") as f:
    f.write(b"retrained")
  with pytest.raises(ConfigError, match=r"^the teacher '.*teacher' changed since this run started"):
    train.train_and_evaluate(config, str(run))
  assert (run / "config.json").read_text() == recorded and not (run / "checkpoints").exists()


def unfinished_run(path):
  os.makedirs(path)
  workdir.write_config(tiny_config(), path)
  return path


@pytest.mark.parametrize("field,value,message", [
    ("teacher", "{tmp}/missing", r"distill.teacher='.*missing' is not a run's workdir \(no config.json\)"),
    ("teacher", "unfinished", r"distill.teacher='.*unfinished' has not finished"),
    ("temperature", 0.0, r"distill.temperature=0.0 is not allowed: it must be a number > 0"),
    ("temperature", -1.0, r"distill.temperature=-1.0 is not allowed"),
    ("weight", 1.5, r"distill.weight=1.5 is not allowed: it must be a number in \[0, 1\]"),
    ("weight", -0.1, r"distill.weight=-0.1 is not allowed"),
])
def test_bad_distill_settings_are_one_line_and_write_nothing(tmp_path, field, value, message):
  if value == "unfinished":
    value = unfinished_run(str(tmp_path / "unfinished"))
  elif isinstance(value, str):
    value = value.format(tmp=tmp_path)
  config = tiny_config()
  config.distill[field] = value
  with pytest.raises(ConfigError, match=message) as error:
    train.train_and_evaluate(config, str(tmp_path / "w"))
  assert "\n" not in str(error.value)
  assert not (tmp_path / "w").exists()


def test_a_teacher_of_another_dataset_is_refused(tmp_path):
  other = tiny_config()
  other.data.name = "cifar10"
  os.makedirs(tmp_path / "t")
  workdir.write_config(other, str(tmp_path / "t"))
  (tmp_path / "t" / "metrics.jsonl").write_text('{"final": true}\n')
  config = student_config(str(tmp_path / "t"))
  with pytest.raises(ConfigError, match=r"was trained on 'cifar10'; allowed: a run on this run's dataset"):
    train.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_the_distill_sweep_makes_the_16_grid_cells_students_of_the_teacher(teacher):
  sweep = grid.load(os.path.join(REPO, f"experiments/distill.py:teacher={teacher},weight=1"))
  cells = {(c.config.alpha, c.config.resolution) for c in sweep.cells}
  assert cells == {(a, r) for a in (1.0, 0.75, 0.5, 0.25) for r in (56, 48, 40, 32)}
  assert {(c.config.distill.teacher, c.config.distill.weight) for c in sweep.cells} == {(teacher, 1.0)}
  twin = grid.load(os.path.join(REPO, "experiments/grid16.py"))
  assert [c.name for c in sweep.cells] == [c.name for c in twin.cells]


def test_the_distill_sweep_without_a_finished_teacher_names_the_command_that_trains_one(tmp_path):
  with pytest.raises(ConfigError, match=r"teacher='.*missing' is not a finished run; train one with `python -m "
                                        r"sweeps.launch --config experiments/grid16.py:data=fashion_mnist --workdir "
                                        r"runs/grid16` and pass teacher=runs/grid16/a1_r56"):
    config_file.load(os.path.join(REPO, f"experiments/distill.py:teacher={tmp_path}/missing"))

