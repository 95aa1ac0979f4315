"""notebooks/analysis.ipynb, executed headless with nbclient and a real kernel on a tiny sweep this test trains."""

import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "analysis.ipynb")

TINY_SWEEP = '''
from mnet_jax.configs import fashion_mnist


def get_config(arg=None):
  config = fashion_mnist.get_config("alpha=0.25,resolution=32")
  config.num_steps = 2
  config.batch_size = 16
  config.data.max_train_examples = 128
  config.data.max_eval_examples = 64
  config.wandb.mode = "disabled"
  return config


def sweep(add, arg):
  for alpha in (0.25, 0.5):
    add(alpha=alpha)
'''


@pytest.mark.slow
def test_analysis_notebook_runs_on_a_tiny_sweep(tmp_path, monkeypatch):
  (tmp_path / "tiny.py").write_text(TINY_SWEEP)
  workdir = tmp_path / "sweep"
  subprocess.run([sys.executable, "-m", "sweeps.launch", "--config", str(tmp_path / "tiny.py"), "--workdir",
                  str(workdir)], cwd=REPO, check=True, capture_output=True)
  (workdir / "results.csv").unlink()  # the notebook rebuilds the report itself

  monkeypatch.setenv("SWEEP_WORKDIR", str(workdir))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(notebook, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}).execute()  # raises on any cell error

  outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  markdown = "\n".join(o.data["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
  assert "| a0.25_r32 |" in markdown and "| a0.5_r32 |" in markdown
  assert "### Table 6" in markdown
  assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # Mult-Adds, params, latency
  assert (workdir / "results.csv").exists()
