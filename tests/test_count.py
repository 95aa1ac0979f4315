"""The counter against the paper's tables (arXiv 1704.04861, copied into mnet_jax/paper_data with TF-Slim's
checkpoint table from tensorflow/models research/slim/nets/mobilenet_v1.md)."""

import json
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from mnet_jax import paper
from mnet_jax.count import count, paper_rows, table2_rows, variant_of
from mnet_jax.errors import ConfigError
from mnet_jax.models import MobileNetV1

ALPHAS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = (224, 192, 160, 128)


def test_reference_figures_exactly():
  # Exact figures by arithmetic on the paper's Table 1 (the trainable count is Keras' model summary).
  assert count()["mult_adds"] == 568_740_352
  assert count()["body_mult_adds"] == 567_716_352
  assert count()["params"] == 4_209_088
  assert count()["trainable_params"] == 4_231_976  # Keras MobileNet(alpha=1.0) trainable count
  layers = count()["layers"]
  assert layers[0].mult_adds == 10_838_016
  assert sum(c.mult_adds for c in layers if c.layer.kind == "depthwise") == 17_385_984
  assert sum(c.mult_adds for c in layers if c.layer.kind == "pointwise") == 539_492_352
  assert [count(a)["params"] for a in ALPHAS] == [4_209_088, 2_568_144, 1_319_648, 463_600]
  assert (count(variant="shallow")["mult_adds"], count(variant="shallow")["params"]) == (307_323_392, 2_875_328)


# TF-Slim's MAC figures for alpha 0.75 (all resolutions) and 0.25-192 follow from no standard convention
# (mnet_jax/paper_data/slim_checkpoints.csv against this count); every other cell of its table agrees with ours
# within 1M.
SLIM_INCONSISTENT = {(0.75, 224), (0.75, 192), (0.75, 160), (0.75, 128), (0.25, 192)}


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_grid_cell(alpha, resolution):
  totals = count(alpha, resolution)
  # Every feature map scales exactly with the input (224, 192, 160, 128 are multiples of 32), so the
  # body's Mult-Adds scale by exactly (resolution / 224)^2, the paper's rho^2; params do not change.
  assert totals["body_mult_adds"] * 224 ** 2 == count(alpha, 224)["body_mult_adds"] * resolution ** 2
  assert totals["params"] == count(alpha, 224)["params"]
  row = next(r for r in paper.slim_checkpoints()
             if float(r["alpha"]) == alpha and int(r["resolution"]) == resolution)
  agrees = abs(totals["mult_adds"] / 1e6 - float(row["million_macs"])) <= 1.0
  assert agrees == ((alpha, resolution) not in SLIM_INCONSISTENT)
  top1 = paper.top1(alpha, resolution)
  if top1 is not None:  # a cell of Tables 6/7/9: the paper's own Mult-Adds within 1M
    row = next(r for r in paper_rows() if r["model"].endswith(f"MobileNet-{resolution}")
               and float(r["model"].split()[0]) == alpha)
    assert abs(totals["mult_adds"] / 1e6 - row["paper_mult_adds_m"]) <= 1.0


def test_paper_tables_4_to_9():
  rows = paper_rows()
  assert {r["table"] for r in rows} == {4, 5, 6, 7, 8, 9}
  for r in rows:
    diff = abs(r["mult_adds_m"] - r["paper_mult_adds_m"])
    body_diff = abs(r["body_mult_adds_m"] - r["paper_mult_adds_m"])
    if r["model"] == "Conv MobileNet":  # known: the paper counted the body only here
      assert body_diff <= 1.0 and diff > 1.0
    else:
      assert diff <= 1.0, r
    digits = len(str(r["paper_params_m"]).split(".")[1])
    assert round(r["params_m"], digits) == r["paper_params_m"], r


def test_table6_and_table7_headline_figures():
  table6 = [count(a)["mult_adds"] / 1e6 for a in ALPHAS]
  assert all(abs(ours - paper) < 1 for ours, paper in zip(table6, [569, 325, 149, 41])), table6
  table7 = [count(1.0, r)["mult_adds"] / 1e6 for r in RESOLUTIONS]
  assert all(abs(ours - paper) < 1 for ours, paper in zip(table7, [569, 418, 290, 186])), table7
  assert [round(count(a)["params"] / 1e6, 1) for a in ALPHAS] == [4.2, 2.6, 1.3, 0.5]
  assert round(count(variant="full_conv")["body_mult_adds"] / 1e6) == 4866
  assert round(count(variant="full_conv")["params"] / 1e6, 1) == 29.3


def test_table2_percentages():
  for r in table2_rows():
    assert abs(r["params_pct"] - r["paper_params_pct"]) <= 0.05
    if r["layer_type"] == "Conv 3x3":  # the flagged digit transposition: 1.19 printed, 1.91 computed
      assert abs(r["mult_adds_pct"] - 1.91) <= 0.05 and r["note"]
    else:
      assert abs(r["mult_adds_pct"] - r["paper_mult_adds_pct"]) <= 0.05


def test_table3_single_layer():
  # One 14x14 layer, 512 -> 512 (Table 3), from the same per-layer counts.
  layer = next(c for c in count()["layers"] if c.layer.name == "block7_dw")
  pointwise = next(c for c in count()["layers"] if c.layer.name == "block7_pw")
  assert layer.mult_adds + pointwise.mult_adds == 52_283_392
  assert layer.params + pointwise.params == 266_752
  full = next(c for c in count(variant="full_conv")["layers"] if c.layer.name == "block7_conv")
  assert (full.mult_adds, full.params) == (462_422_016, 2_359_296)


@pytest.mark.parametrize("variant", ["standard", "shallow", "full_conv"])
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_module_parameter_leaves_equal_trainable_count(variant, alpha, resolution):
  model = MobileNetV1(alpha=alpha, variant=variant)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, resolution, resolution, 3)))
  n = sum(leaf.size for leaf in jax.tree.leaves(shapes["params"]))
  assert n == count(alpha, resolution, variant)["trainable_params"]


def test_variant_names():
  assert variant_of("Conv MobileNet") == "full_conv"
  assert variant_of("Shallow MobileNet") == "shallow"
  assert variant_of("0.75 MobileNet-224") == "standard"


@pytest.mark.slow
def test_xla_cost_analysis_agrees_with_analytic_count():
  # XLA counts 2 flops per multiply-accumulate, plus the elementwise work (BatchNorm, ReLU6, pooling,
  # bias) that the paper's convention leaves out; that extra is a few percent of the total here.
  model = MobileNetV1(alpha=0.5, num_classes=10)
  images = jnp.zeros((1, 64, 64, 3))
  variables = jax.eval_shape(model.init, jax.random.key(0), images)
  cost = jax.jit(lambda v, x: model.apply(v, x)).lower(variables, images).compile().cost_analysis()
  if isinstance(cost, list):
    cost = cost[0]
  analytic_flops = 2 * count(0.5, 64, num_classes=10)["mult_adds"]
  assert 1.0 <= cost["flops"] / analytic_flops <= 1.05, (cost["flops"], analytic_flops)


@pytest.mark.slow
def test_cli_json_and_table():
  out = subprocess.run([sys.executable, "-m", "mnet_jax.count", "--alpha", "0.5", "--resolution", "160", "--json"],
                       capture_output=True, text=True, check=True).stdout
  d = json.loads(out)
  assert (d["mult_adds"], d["params"]) == (76_524_800, 1_319_648)
  assert d["trainable_params"] == count(0.5, 160)["trainable_params"]


# The paper's four inconsistencies (reference facts): three Mult-Adds figures that only the body-only count (no FC)
# rounds to, and Table 2's Conv 3x3 share, printed 1.19 % where the arithmetic gives 1.91 %.
BODY_ONLY_ROWS = {"Conv MobileNet", "1.0 MobileNet-160", "0.50 MobileNet-160"}


def test_the_papers_four_inconsistencies_are_flagged_by_name():
  rows = paper_rows()
  assert {r["model"] for r in rows if round(r["mult_adds_m"]) != r["paper_mult_adds_m"]} == BODY_ONLY_ROWS
  assert all(round(r["body_mult_adds_m"]) == r["paper_mult_adds_m"] for r in rows if r["model"] in BODY_ONLY_ROWS)
  assert {r["layer_type"] for r in table2_rows()
          if abs(r["mult_adds_pct"] - r["paper_mult_adds_pct"]) > 0.05} == {"Conv 3x3"}
  table = subprocess.run([sys.executable, "-m", "mnet_jax.count", "--paper"], capture_output=True, text=True,
                         check=True).stdout
  assert "MISMATCH" not in table
  lines = table.splitlines()
  table2 = {r["layer_type"]: [x for x in lines if re.match(rf"  {re.escape(r['layer_type'])}\s", x)]
            for r in table2_rows()}
  tables = {r["model"]: [x for x in lines if re.match(rf"  \d\s+{re.escape(r['model'])}\s", x)] for r in rows}
  assert all(len(found) == 1 for found in table2.values()) and all(found for found in tables.values())
  flagged = {name for name, found in table2.items() if "KNOWN" in found[0]}
  assert flagged == {"Conv 3x3"} and "digit transposition" in table2["Conv 3x3"][0]
  assert table2["Conv 3x3"][0].split()[2:4] == ["1.19", "1.91"]  # the paper's figure, then ours
  body_only = {name for name, found in tables.items() if any("body-only" in x and "KNOWN" in x for x in found)}
  assert body_only == BODY_ONLY_ROWS


@pytest.mark.parametrize("args, message", [
    (["--alpha", "0"], "alpha=0.0 is not allowed"),
    (["--alpha", "-0.5"], "alpha=-0.5 is not allowed"),
    (["--alpha", "wide"], "alpha='wide' is not a number"),
    (["--resolution", "31"], "resolution=31 is not allowed: it must be an integer >= 32"),
    (["--variant", "deep"], "variant='deep' is unknown; allowed: standard, shallow, full_conv"),
    (["--num-classes", "0"], "num_classes=0 is not allowed"),
])
@pytest.mark.slow
def test_cli_bad_input_is_one_line(args, message):
  result = subprocess.run([sys.executable, "-m", "mnet_jax.count", *args], capture_output=True, text=True)
  assert result.returncode != 0
  assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr


@pytest.mark.parametrize("kwargs", [dict(alpha=0), dict(alpha=float("nan")), dict(alpha="1"), dict(alpha=True),
                                    dict(variant="wide"), dict(num_classes=0), dict(resolution=16)])
def test_bad_values_raise_config_error(kwargs):
  with pytest.raises(ConfigError):
    count(**kwargs)


# Depthwise kernel sizes and MixConv (Tan & Le 2019, arXiv 1907.09595): exact figures by arithmetic on Table 1 with
# k x k depthwise layers, and mnet_jax/paper_data/mixconv_points.csv, counted apart from this code.
def test_mixconv_reference_figures_exactly():
  assert count(kernel_sizes=(5,))["mult_adds"] == 599_648_768
  assert count(kernel_sizes=(7,))["mult_adds"] == 646_011_392
  assert count(kernel_sizes=(9,))["mult_adds"] == 707_828_224
  assert count(kernel_sizes=(3, 5))["mult_adds"] == 584_194_560
  mixed = count(kernel_sizes=(3, 5, 7, 9))
  assert (mixed["mult_adds"], mixed["params"]) == (630_557_184, 4_367_808)
  for point in paper.mixconv_points():  # the points file's Mult-Adds column, computed apart from this code
    assert count(kernel_sizes=point["kernel_sizes"], kernel_split=point["split"])["mult_adds"] == point["mult_adds"]


def independent_count(alpha, resolution, num_classes, kernel_sizes, split, stem_stride=2):
  """Table 1 walked by hand: stem, 13 x (depthwise groups, pointwise), FC; ceil(size / stride) per conv."""
  width = lambda d: max(int(d * alpha), 8)
  blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
  size = -(-resolution // stem_stride)
  channels = width(32)
  mult_adds, params = size * size * 27 * channels, 27 * channels
  for depth, stride in blocks:
    g = len(kernel_sizes)
    if split == "equal":
      groups = [channels // g + (channels % g if i == 0 else 0) for i in range(g)]
    else:
      groups = [channels // 2 ** (i + 1) for i in range(g - 1)]
      groups.append(channels - sum(groups))
    size = -(-size // stride)
    dw = sum(k * k * c for k, c in zip(kernel_sizes, groups))
    pw = channels * width(depth)
    mult_adds += size * size * (dw + pw)
    params += dw + pw
    channels = width(depth)
  return mult_adds + channels * num_classes, params + channels * num_classes


@pytest.mark.parametrize("alpha, resolution, num_classes, kernel_sizes, split", [
    (1.0, 224, 1000, (7,), "equal"),
    (0.75, 192, 10, (13,), "equal"),
    (0.5, 160, 1000, (3, 5, 7, 9), "equal"),
    (0.25, 128, 37, (3, 5, 7), "equal"),
    (1.0, 96, 10, (3, 5, 7, 9), "exponential"),
    (0.75, 224, 1000, (9, 3), "exponential"),
    (0.35, 64, 5, (3, 5, 7, 9, 11, 13), "equal"),
])
def test_kernel_sizes_count_equals_independent_count(alpha, resolution, num_classes, kernel_sizes, split):
  totals = count(alpha, resolution, num_classes=num_classes, kernel_sizes=kernel_sizes, kernel_split=split)
  assert (totals["mult_adds"], totals["params"]) == independent_count(alpha, resolution, num_classes, kernel_sizes,
                                                                      split)
  model = MobileNetV1(alpha=alpha, num_classes=num_classes, kernel_sizes=kernel_sizes, kernel_split=split)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, resolution, resolution, 3)))
  assert sum(leaf.size for leaf in jax.tree.leaves(shapes["params"])) == totals["trainable_params"]


@pytest.mark.slow
def test_cli_kernel_sizes_json_table_and_paper():
  run = lambda *args: subprocess.run([sys.executable, "-m", "mnet_jax.count", *args], capture_output=True, text=True,
                                     check=True).stdout
  d = json.loads(run("--kernel-sizes", "3,5,7,9", "--json"))
  assert (d["mult_adds"], d["params"], d["kernel_sizes"], d["kernel_split"]) == (630_557_184, 4_367_808,
                                                                                 [3, 5, 7, 9], "equal")
  assert d["layers"][1]["groups"] == [[3, 8], [5, 8], [7, 8], [9, 8]]
  table = run("--kernel-sizes", "3,5,7", "--kernel-split", "exponential", "--alpha", "0.5")
  assert "mixconv" in table and "dw 7x7" in table and f"{count(0.5, kernel_sizes=(3, 5, 7), kernel_split='exponential')['mult_adds']:,}" in table
  paper_table = run("--paper")
  assert "MixConv" in paper_table and "630.56" in paper_table and "above this count" in paper_table


@pytest.mark.parametrize("args, message", [
    (["--kernel-sizes", "4"], "kernel_sizes=(4,) has kernel size 4; allowed: one or more different odd integers >= 3"),
    (["--kernel-sizes", "1,3"], "has kernel size 1; allowed"),
    (["--kernel-sizes", "3,5,3"], "kernel_sizes=(3, 5, 3) repeats a size"),
    (["--kernel-sizes", ""], "kernel_sizes=() is empty"),
    (["--kernel-sizes", "3;5"], "kernel_sizes='3;5' is not a comma-separated list of integers"),
    (["--kernel-sizes", "3,5", "--kernel-split", "halves"], "kernel_split='halves' is unknown; allowed: equal, exponential"),
    (["--kernel-sizes", "3,5,7,9,11,13,15,17,19", "--alpha", "0.25"], "leaves a group of block1_dw (8 channels) empty"),
    (["--kernel-sizes", "3,5,7,9,11", "--kernel-split", "exponential", "--alpha", "0.25"], "(8 channels) empty"),
])
@pytest.mark.slow
def test_cli_bad_kernel_sizes_are_one_line(args, message):
  result = subprocess.run([sys.executable, "-m", "mnet_jax.count", *args], capture_output=True, text=True)
  assert result.returncode != 0
  assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr
