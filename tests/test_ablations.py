"""Grouped pointwise convs with channel shuffle and spatially separable depthwise convs (V1): their counts against an
independent count, each kernel set against a reference (forward and gradients, float32 and bfloat16), the module's
parameters, bad input in one line, and experiments/ablations.py's cells."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradients import gradients_function, kernel_sets_agree, rounding_spread, tree_error

from mnet_jax import count as count_lib, models
from mnet_jax.errors import ConfigError
from mnet_jax.ops import cpu_kernels
from mnet_jax.ops.depthwise import depthwise_xla, spatial_depthwise_conv
from mnet_jax.ops.pointwise import channel_shuffle, grouped_pointwise_conv
from sweeps import ablations, grid, markdown

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Table 1, written out again: (pointwise output channels, depthwise stride) of the 13 blocks.
TABLE1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
needs_cpu_kernels = pytest.mark.skipif(cpu_kernels.library_error() is not None or jax.device_count() > 1,
                                       reason="the 'cpu' kernel set needs a compiler and a one-device CPU process")


def hand_count(alpha, resolution, groups=1, spatial=False, num_classes=1000):
  """(Mult-Adds, params) of V1 by arithmetic on Table 1: block 1's 1x1 whole, the others C_in C_out / g; a spatial
  k x 1 depthwise conv runs at (H / s) x W, its 1 x k partner at (H / s) x (W / s)."""
  width = lambda c: max(int(c * alpha), 8)
  size = -(-resolution // 2)
  channels = width(32)
  mult_adds, params = size * size * 27 * channels, 27 * channels
  for number, (depth, stride) in enumerate(TABLE1, start=1):
    out_size, out = -(-size // stride), width(depth)
    if spatial:
      mult_adds += out_size * size * 3 * channels + out_size * out_size * 3 * channels
      params += 6 * channels
    else:
      mult_adds += out_size * out_size * 9 * channels
      params += 9 * channels
    g = groups if number > 1 else 1
    mult_adds += out_size * out_size * channels * out // g
    params += channels * out // g
    size, channels = out_size, out
  return mult_adds + channels * num_classes, params + channels * num_classes


def test_the_issues_figures():
  grouped = count_lib.count(pointwise_groups=4)
  assert (grouped["mult_adds"], grouped["params"]) == (183_388_672, 1_855_936)
  spatial = count_lib.count(depthwise_factorization="spatial")
  assert (spatial["mult_adds"], spatial["params"]) == (564_073_984, 4_194_208)
  small = count_lib.count(0.5, 160, num_classes=10, pointwise_groups=2)
  assert (small["mult_adds"], small["params"]) == (43_249_920, 420_576)


@pytest.mark.parametrize("alpha, resolution, groups, shuffle, spatial", [
    (1.0, 224, 8, True, False), (0.75, 192, 2, False, True), (0.5, 160, 4, True, True), (0.25, 128, 8, False, False),
    (0.25, 56, 1, False, True), (1.0, 33, 4, True, True)])
def test_counts_equal_an_independent_count_and_the_modules_parameters(alpha, resolution, groups, shuffle, spatial):
  factorization = "spatial" if spatial else "none"
  totals = count_lib.count(alpha, resolution, num_classes=10, pointwise_groups=groups, channel_shuffle=shuffle,
                           depthwise_factorization=factorization)
  assert (totals["mult_adds"], totals["params"]) == hand_count(alpha, resolution, groups, spatial, 10)
  unshuffled = count_lib.count(alpha, resolution, num_classes=10, pointwise_groups=groups,
                               depthwise_factorization=factorization)
  assert [c.mult_adds for c in totals["layers"]] == [c.mult_adds for c in unshuffled["layers"]]  # a shuffle is free
  module = models.create("mobilenet_v1", alpha, 10, pointwise_groups=groups, channel_shuffle=shuffle,
                         depthwise_factorization=factorization, kernels="portable")
  variables = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, resolution, resolution, 3)))
  assert sum(leaf.size for leaf in jax.tree.leaves(variables["params"])) == totals["trainable_params"]


def test_module_holds_grouped_and_factorized_kernels():
  module = models.create("mobilenet_v1", 0.25, 10, pointwise_groups=4, channel_shuffle=True,
                         depthwise_factorization="spatial", kernels="portable")
  params = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  assert params["block1_pw"]["kernel"].shape == (1, 1, 8, 16)  # ShuffleNet leaves the first 1x1 whole
  assert params["block2_pw"]["kernel"].shape == (1, 1, 4, 32)
  assert (params["block2_dw"]["kernel_v"].shape, params["block2_dw"]["kernel_h"].shape) == ((3, 1, 1, 16),
                                                                                              (1, 3, 1, 16))
  assert "kernel" not in params["block2_dw"]
  layers = {layer.name: layer for layer in module.layers()}
  assert [n for n, layer in layers.items() if layer.shuffle] == [f"block{i}_pw" for i in range(2, 13)]


def block_diagonal(kernel, groups):
  """The grouped 1x1 kernel (C_in / g, C_out) as the dense (C_in, C_out) matrix it stands for."""
  per_in, out = kernel.shape
  dense = np.zeros((per_in * groups, out), np.float64)
  per_out = out // groups
  for i in range(groups):
    dense[i * per_in:(i + 1) * per_in, i * per_out:(i + 1) * per_out] = kernel[:, i * per_out:(i + 1) * per_out]
  return dense


def kernel_set_forms():
  return ["portable", pytest.param("cpu", marks=needs_cpu_kernels)]


@pytest.mark.parametrize("kernels", kernel_set_forms())
@pytest.mark.parametrize("dtype, tolerance", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_grouped_pointwise_equals_a_block_diagonal_matmul(kernels, dtype, tolerance):
  groups = 4
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, 5, 7, 32)), np.float32)
  kernel = np.asarray(jax.random.normal(jax.random.key(1), (8, 24)), np.float32)
  cotangent = np.asarray(jax.random.normal(jax.random.key(2), (2, 5, 7, 24)), np.float32)
  dense = block_diagonal(kernel, groups)
  x64, g64 = x.astype(np.float64), cotangent.astype(np.float64)
  expected = x64 @ dense
  expected_dx = g64 @ dense.T
  # The grouped kernel's gradient: the dense one's entries inside the blocks.
  dense_grad = np.einsum("nhwi,nhwo->io", x64, g64)
  expected_dk = np.concatenate([dense_grad[i * 8:(i + 1) * 8, i * 6:(i + 1) * 6] for i in range(groups)], axis=1)
  out, vjp = jax.vjp(lambda a, k: grouped_pointwise_conv(a, k, groups, kernels), x.astype(dtype),
                     kernel.astype(dtype))
  dx, dk = vjp(cotangent.astype(dtype))
  for got, want in ((out, expected), (dx, expected_dx), (dk, expected_dk)):
    assert got.dtype == dtype
    error = np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)
    assert error < tolerance, error


def test_channel_shuffle_interleaves_the_groups():
  x = jnp.arange(12.0).reshape(1, 1, 1, 12)
  assert channel_shuffle(x, 3)[0, 0, 0].tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
  assert channel_shuffle(channel_shuffle(x, 3), 4).tolist() == x.tolist()  # g groups of C/g, then C/g of g


@pytest.mark.parametrize("impl", ["xla", "shifted"])
@pytest.mark.parametrize("stride, size", [(1, 9), (2, 9), (2, 8)])
@pytest.mark.parametrize("dtype, tolerance", [(jnp.float32, 1e-5),
                                              pytest.param(jnp.bfloat16, 2e-2, marks=pytest.mark.slow)])
def test_spatial_depthwise_equals_the_outer_product_kernel(impl, stride, size, dtype, tolerance):
  """k x 1 at stride (s, 1) then 1 x k at (1, s) is the k x k depthwise conv whose kernel is their outer product,
  forward and gradients (the reference: XLA's grouped convolution in float32)."""
  x = jax.random.normal(jax.random.key(0), (2, size, size + 3, 6))
  v, h = jax.random.normal(jax.random.key(1), (3, 1, 1, 6)), jax.random.normal(jax.random.key(2), (1, 3, 1, 6))

  def reference(x, v, h):
    return depthwise_xla(x, v * h, stride)  # (3, 1) * (1, 3) broadcasts to the (3, 3) outer product
  expected, reference_vjp = jax.vjp(reference, x, v, h)
  got, vjp = jax.vjp(lambda *a: spatial_depthwise_conv(*a, stride, impl), x.astype(dtype), v.astype(dtype),
                     h.astype(dtype))
  assert got.shape == expected.shape == (2, -(-size // stride), -(-(size + 3) // stride), 6)
  cotangent = jax.random.normal(jax.random.key(3), expected.shape)
  for mine, want in zip((got, *vjp(cotangent.astype(dtype))), (expected, *reference_vjp(cotangent))):
    error = float(jnp.linalg.norm(mine.astype(jnp.float32) - want) / jnp.linalg.norm(want))
    assert error < tolerance, error


@pytest.mark.slow
@needs_cpu_kernels
def test_cpu_kernel_set_equals_portable_with_groups_shuffle_and_factorization():
  images = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  labels = jnp.arange(4) % 3
  results = {}
  for kernels in ("portable", "cpu"):
    module = models.create("mobilenet_v1", 0.25, 3, pointwise_groups=2, channel_shuffle=True,
                           depthwise_factorization="spatial", kernels=kernels, dropout_rate=0.0, stem_stride=1)
    gradients = gradients_function(module, jax.jit(module.init)(jax.random.key(0), images))
    results[kernels] = gradients(images, labels)
    if kernels == "portable":
      spread = rounding_spread(gradients, images, labels, results[kernels][1])  # float32 rounding, this network
  (loss_p, grads_p), (loss_c, grads_c) = results["portable"], results["cpu"]
  np.testing.assert_allclose(loss_c, loss_p, rtol=1e-5)
  assert kernel_sets_agree(grads_c, grads_p, spread), (tree_error(grads_c, grads_p), spread)


def test_default_v1_layers_are_unchanged():
  assert models.layer_spec("mobilenet_v1") == models.layer_spec("mobilenet_v1", pointwise_groups=1,
                                                                 depthwise_factorization="none")
  assert all(layer.pointwise_groups == 1 and not layer.shuffle and not layer.factorization
             for layer in models.layer_spec("mobilenet_v1"))


@pytest.mark.parametrize("args, message", [
    (["--pointwise-groups", "3"], "pointwise_groups=3 does not divide block2_pw's channels (64 in, 128 out)"),
    (["--pointwise-groups", "0"], "pointwise_groups=0 is not allowed: it must be an integer >= 1"),
    (["--depthwise-factorization", "diagonal"], "depthwise_factorization='diagonal' is unknown; allowed: none, "
                                                 "spatial"),
    (["--channel-shuffle"], "channel_shuffle=True is not allowed with pointwise_groups=1"),
    (["--model", "mobilenet_v2", "--pointwise-groups", "2"], "pointwise_groups=2 is not allowed for mobilenet_v2"),
    (["--kernel-sizes", "3,5", "--depthwise-factorization", "spatial"], "takes one kernel size"),
])
@pytest.mark.slow
def test_bad_input_is_one_line(args, message):
  result = subprocess.run([sys.executable, "-m", "mnet_jax.count", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
  assert result.returncode != 0 and result.stdout == ""
  assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr


def test_bad_module_options_raise_config_error():
  with pytest.raises(ConfigError, match="variant='full_conv' has no depthwise or pointwise layers"):
    models.layer_spec("mobilenet_v1", variant="full_conv", pointwise_groups=2)


@pytest.mark.parametrize("data, resolution, classes", [("fashion_mnist", 56, 10), ("imagenet", 224, 1000)])
def test_the_sweep_holds_grouped_cells_their_equal_mult_adds_twins_and_spatial_cells(data, resolution, classes):
  sweep = grid.load(os.path.join(REPO, f"experiments/ablations.py:data={data}"))
  cells = [(c.config.alpha, c.config.model.pointwise_groups, c.config.model.channel_shuffle,
            c.config.model.depthwise_factorization) for c in sweep.cells]
  assert {c.config.resolution for c in sweep.cells} == {resolution} and len(set(cells)) == len(cells) == 26
  assert [c for c in cells if c[1] > 1] == [(a, g, s, "none") for a in (1.0, 0.25) for g in (2, 4, 8)
                                           for s in (False, True)]
  assert [c[0] for c in cells if c[3] == "spatial"] == [1.0, 0.75, 0.5, 0.25]
  plain = {c[0] for c in cells if c[1:] == (1, False, "none")}
  mult_adds = lambda alpha, groups=1: count_lib.count(alpha, resolution, num_classes=classes,
                                                      pointwise_groups=groups)["mult_adds"]
  for alpha in (1.0, 0.25):
    for groups in (2, 4, 8):
      target = mult_adds(alpha, groups)
      twin = min(plain, key=lambda a: abs(mult_adds(a) - target))
      assert abs(mult_adds(twin) / target - 1) < 0.02 and twin < alpha  # a narrower network, equal Mult-Adds
      step = 0.001  # no alpha one step away is nearer
      assert all(abs(mult_adds(twin) - target) <= abs(mult_adds(round(twin + d, 3)) - target) for d in (-step, step))


def test_the_sweep_adds_students_with_a_teacher(tmp_path):
  sweep = grid.load(os.path.join(REPO, f"experiments/ablations.py:data=fashion_mnist,teacher={tmp_path}"))
  students = [c.config.alpha for c in sweep.cells if c.config.distill.teacher == str(tmp_path)]
  assert students == [1.0, 0.75, 0.5, 0.25] and len(sweep.cells) == 30
  with pytest.raises(ConfigError, match="is not a directory"):
    grid.load(os.path.join(REPO, f"experiments/ablations.py:teacher={tmp_path / 'none'}"))


def cell(alpha, top1, mult_adds, std=None, n=1, **model):
  teacher = model.pop("teacher", None)
  return {"config": {"alpha": alpha, "resolution": 56, "model": model, "distill": {"teacher": teacher}},
          "alpha": alpha, "resolution": 56, "test_top1": top1, "test_top1_std": std, "n": n, "mult_adds": mult_adds,
          "params": 1}


def test_each_ablation_draws_its_own_cells_beside_the_plain_ones():
  groups = [cell(1.0, 0.90, 1000), cell(0.55, 0.86, 300), cell(1.0, 0.87, 310, pointwise_groups=4),
            cell(1.0, 0.88, 310, pointwise_groups=4, channel_shuffle=True),
            cell(1.0, 0.89, 990, depthwise_factorization="spatial"), cell(0.55, 0.87, 300, teacher="/t")]
  lines = ablations.group_curves(ablations.GROUPS, groups)
  assert {k: [label for _, label, _ in line] for k, line in lines.items()} == {
      "plain": ["α=0.55", "α=1"], "grouped": ["α=1 g=4"], "shuffle": ["α=1 g=4"]}
  lines = ablations.group_curves(ablations.FACTORIZATION, groups)
  assert {k: [label for _, label, _ in line] for k, line in lines.items()} == {
      "none": ["α=0.55", "α=1"], "spatial": ["α=1"]}
  lines = ablations.group_curves(ablations.DISTILL, groups)
  assert {k: len(line) for k, line in lines.items()} == {"none": 2, "teacher": 1}
  text = markdown.ablation_section(ablations.FACTORIZATION, ["model.depthwise_factorization"], groups,
                                   "fashion_mnist")
  assert text.count("\n| ") == 5  # the header, its rule, the two plain cells and the spatial one


def test_the_lever_section_names_the_winner_at_each_level_against_the_seed_spread():
  groups = [cell(1.0, 0.900, 1000, 0.002, 3), cell(0.55, 0.860, 300, 0.002, 3),
            cell(1.0, 0.870, 310, 0.002, 3, pointwise_groups=4),
            cell(1.0, 0.880, 310, 0.002, 3, pointwise_groups=4, channel_shuffle=True),
            cell(1.0, 0.901, 990, 0.002, 3, depthwise_factorization="spatial")]
  text = markdown.lever_section(groups)
  rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
  assert rows[0].startswith("| 0.0 | α=0.55 | 86.00 ± 0.20 % | α=1 g=4 + shuffle | 88.00 ± 0.20 % | 2.00 | 0.33 | "
                            "the lever wins |")
  assert rows[1].endswith("| 0.10 | 0.33 | within the noise |")
  assert markdown.lever_section(groups[:2]) is None  # no lever pulled


@pytest.mark.slow
def test_ablation_cells_on_fashion_mnist_end_to_end(tmp_path):
  """A plain, a grouped + shuffled, its equal-Mult-Adds twin and a spatial cell at a tiny budget, then the report."""
  workdir = tmp_path / "ablations"
  tiny = ["--config.num_steps=2", "--config.batch_size=16", "--config.data.max_train_examples=64",
          "--config.data.max_eval_examples=32", "--config.wandb.mode=disabled"]
  for index in (3, 17, 18, 25):
    result = subprocess.run([sys.executable, "-m", "sweeps.launch", "--config",
                             "experiments/ablations.py:data=fashion_mnist,runlocal", "--workdir", str(workdir),
                             "--cell", str(index), *tiny], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
  text = (workdir / "report.md").read_text()
  for heading in ("## Grouped pointwise convs and channel shuffle", "## Spatially separable depthwise convs",
                  "## Which lever wins at each Mult-Adds level"):
    assert heading in text
  for name in ("acc_vs_mult_adds_groups.png", "acc_vs_mult_adds_factorization.png"):
    assert (workdir / name).stat().st_size > 0
  assert "| α=0.25 |" in text.split("## Which lever wins")[1]  # the spatial cell beside the plain one


@pytest.mark.parametrize("options, message", [
    ({"pointwise_groups": 2}, "pointwise_groups=2 (block2_pw) has no LiteRT export"),
    ({"depthwise_factorization": "spatial"}, "depthwise_factorization='spatial' (block1_dw) has no LiteRT export")])
def test_the_litert_export_refuses_the_new_layers_in_one_line(options, message):
  from mnet_jax import export_tf
  module = models.create("mobilenet_v1", 0.25, 10, kernels="portable", **options)
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    export_tf.tf_function(module, {}, 32)
