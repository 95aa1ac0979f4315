"""The benchmarks: this project's training step and inference against PyTorch, and the input pipelines alone.

`python -m mnet_jax.bench` (`__main__.py`, the command line; docs/benchmarks.md). The modules:
  model.py        the model a benchmark times: a Flax module and its layer spec
  jax_runner.py   the trainer's jitted step and the inference forward of such a model
  torch_peer.py   the PyTorch twin of a layer spec (or timm's), run in a child process
  compare.py      the two timed in turns, setting by setting; the table or JSON lines
  input_modes.py  the input pipelines alone (`--pipeline`), and those printed beside the step
  jpegs.py        synthetic ImageNet-like JPEGs
  timing.py       the one clock: wall and CPU seconds, images/s of a stream of batches
What machine and code a figure came from: `mnet_jax.machine`.
"""
