"""What the sweep configs (table4-7, grid16, demo, mixconv) share: the base config for each dataset and the grid.

Every sweep file has `get_config(arg)` and `sweep(add, arg)`, `arg` being the text after the ":" of
`--config experiments/x.py:arg` (None without one): `sweep` calls `add(**overrides)` once per cell, over any config
field (dotted names through `add(**{"optim.base_learning_rate": 0.05})`). The table, grid16 and mixconv sweeps take
`data=fashion_mnist|imagenet[,runlocal][,budget=demo]` (`parse`); demo takes none (`no_argument`). Both check `arg` in
get_config and in sweep, so an argument a file does not take is a one-line error whichever is called first.

Resolutions. ImageNet uses the paper's 224/192/160/128 (rho = 1, 6/7, 5/7, 4/7). Fashion-MNIST images are
28 px and the model needs >= 32 px, so its grid applies the same ratios to 56 (= 224 / 4): 56/48/40/32, the
28-px images upsampled, with the paper's stride-2 stem (not mnet_jax/configs/fashion_mnist.py's stride-1 small-image
stem): at rho = 1 the stem's output is 28 x 28, the images' own resolution, and every feature map is ImageNet's
at the same rho divided by 4 (the last blocks run at 2 x 2 down to 1 x 1). A stride-1 stem would cost 4x the
Mult-Adds for no new pixels, and the 16 cells would not train on a CPU in any reasonable time.

Budgets. `budget=full` trains for the dataset config's budget (Fashion-MNIST: 3 epochs of 128-image steps);
`budget=demo` (Fashion-MNIST only) for `make demo`'s: 180 steps, warm-up 45, so that a 16-cell sweep takes minutes
on a laptop's CPU and each cell compares with its twin in runs/demo. Without one a sweep file's default holds:
`full`, except families.py's `demo` on Fashion-MNIST (`parse`'s `default_budget`).
"""

from mnet_jax.configs import common, fashion_mnist, imagenet
from mnet_jax.errors import ConfigError

ALPHAS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = {"imagenet": (224, 192, 160, 128), "fashion_mnist": (56, 48, 40, 32)}
BASES = {"imagenet": imagenet, "fashion_mnist": fashion_mnist}
BUDGETS = ("full", "demo")
DEMO_STEPS = 180
# A quarter of the steps: with a tenth, the alpha-1 cells' loss spiked as the lr peaked and the median seed ranked
# worse (docs/perf-log.md, 2026-11-30 ef36a90).
DEMO_WARMUP_STEPS = 45


def parse(arg, default_budget="full"):
  """`arg` as a namespace (data, runlocal, budget). `default_budget` is the sweep file's budget where `arg` names
  none: it holds for Fashion-MNIST without runlocal; elsewhere the budget is 'full'."""
  parsed = common.parse_arg(arg, data="fashion_mnist", runlocal=False, budget="")
  if not parsed.budget:
    parsed.budget = default_budget if parsed.data == "fashion_mnist" and not parsed.runlocal else "full"
  if parsed.data not in BASES:
    raise ConfigError(f"config argument data={parsed.data!r} is unknown; allowed: {', '.join(BASES)}")
  if parsed.budget not in BUDGETS:
    raise ConfigError(f"config argument budget={parsed.budget!r} is unknown; allowed: {', '.join(BUDGETS)}")
  if parsed.budget == "demo" and (parsed.data != "fashion_mnist" or parsed.runlocal):
    raise ConfigError(f"config argument budget=demo is Fashion-MNIST's CPU budget; data={parsed.data!r}"
                      f"{' with runlocal' if parsed.runlocal else ''} takes budget=full")
  return parsed


def grid_arg(parsed):
  """The `data=...` argument of a sweep file that parses more keys than these (distill, ablations)."""
  return (f"data={parsed.data}" + (",runlocal" if parsed.runlocal else "") +
          (f",budget={parsed.budget}" if parsed.budget != "full" else ""))


def no_argument(arg, name):
  """For a sweep file that takes no argument: any `arg` is a one-line error."""
  if arg:
    raise ConfigError(f"config argument {arg!r} is unknown: {name} takes no argument; its fields are overridden "
                      "with --config.field=value")


def base_config(arg, default_budget="full"):
  """The dataset's experiment config (mnet_jax/configs/fashion_mnist.py or imagenet.py) at the grid's top resolution,
  at the budget of `parse(arg, default_budget)`."""
  parsed = parse(arg, default_budget)
  config = BASES[parsed.data].get_config("runlocal" if parsed.runlocal else None)
  config.alpha = 1.0
  config.resolution = RESOLUTIONS[parsed.data][0]
  config.model.stem_stride = 2
  if parsed.data == "fashion_mnist":
    # fashion_mnist.py's peak lr 0.2 suits its alpha-0.5 network with the stride-1 stem; on this grid it diverged
    # the alpha-1 cells (docs/perf-log.md, 2026-11-30 0ea7b62) and ranked the demo's cells worse.
    config.optim.base_learning_rate = 0.1
  if parsed.budget == "demo":
    config.num_steps = DEMO_STEPS
    config.optim.warmup_steps = DEMO_WARMUP_STEPS
    config.log_every_steps = 30
    config.checkpoint_every_steps = 90
    config.wandb.mode = "disabled"  # its start-up is seconds per cell; metrics.jsonl and the report keep everything
  return config


def resolutions(arg):
  return RESOLUTIONS[parse(arg).data]
