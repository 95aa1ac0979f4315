"""Exact Mult-Adds and parameter counts of any family (mnet_jax.models), layer by layer, from the module's own spec.

Convention (it reproduces the papers): Mult-Adds are the multiply-accumulates of every conv (squeeze-excite's two
1x1 convs on the pooled vector included) and of the fc layers; BatchNorm, activations, pooling, residual adds and
squeeze-excite's scaling are not counted. "params" are conv and fc weights; `biases` are the fc and squeeze-excite
biases (V3's head_fc bias among them); `trainable_params` adds those and BatchNorm's scale/bias, and equals the
number of entries in the module's `params` collection.

  python -m mnet_jax.count --alpha 0.5 --resolution 160 [--variant shallow] [--json]
  python -m mnet_jax.count --model mobilenet_v3_large [--minimalistic] --alpha 0.75 --resolution 224
  python -m mnet_jax.count --kernel-sizes 3,5,7,9 [--kernel-split equal|exponential]  # MixConv depthwise layers
  python -m mnet_jax.count --pointwise-groups 4 [--channel-shuffle] [--depthwise-factorization spatial]
  python -m mnet_jax.count --paper

A depthwise layer with groups (k_i, C_i) counts sum_i k_i^2 * C_i weights, each applied at every output position.
A grouped pointwise layer (g groups) counts C_in * C_out / g weights; a channel shuffle counts nothing. A spatially
factorized k x k depthwise layer counts 2 k C weights: the k x 1 conv's k C at its ceil(H / s) x W outputs (it
carries only the vertical stride), the 1 x k conv's k C at the ceil(H / s) x ceil(W / s) outputs.
"""

import dataclasses
import json

from mnet_jax import models, paper
from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.models.mobilenet_v1 import KERNEL_SPLITS, VARIANTS
from mnet_jax.models.spec import Layer, check_resolution


@dataclasses.dataclass(frozen=True)
class LayerCount:
  layer: Layer
  in_size: int
  out_size: int
  mult_adds: int
  params: int  # weights only (the paper's convention)
  trainable_params: int  # plus biases and BatchNorm scale/bias
  biases: int = 0  # fc and squeeze-excite biases


def count_layers(layers, resolution):
  """Per-layer counts for a square input of `resolution` pixels (TF 'SAME' padding: out = ceil(in / stride))."""
  check_resolution(resolution)
  counts, size = [], resolution
  for layer in layers:
    if layer.kind == "fc":  # after global average pooling
      weights = layer.in_channels * layer.out_channels
      counts.append(LayerCount(layer, 1, 1, weights, weights, weights + layer.out_channels, layer.out_channels))
      continue
    if layer.kind == "squeeze_excite":  # two 1x1 convs with biases on the pooled vector
      weights = 2 * layer.in_channels * layer.se_channels
      biases = layer.se_channels + layer.in_channels
      counts.append(LayerCount(layer, size, size, weights, weights, weights + biases, biases))
      continue
    out_size = -(-size // layer.stride)
    mult_adds = None
    if layer.kind == "depthwise" and layer.factorization == "spatial":
      (k, channels), = layer.groups
      weights = 2 * k * channels
      mult_adds = out_size * size * k * channels + out_size ** 2 * k * channels
    elif layer.kind == "depthwise":
      weights = sum(k * k * channels for k, channels in layer.groups)
    else:
      weights = layer.kernel_size ** 2 * layer.in_channels * layer.out_channels // layer.pointwise_groups
    mult_adds = out_size ** 2 * weights if mult_adds is None else mult_adds
    counts.append(LayerCount(layer, size, out_size, mult_adds, weights, weights + 2 * layer.out_channels))
    size = out_size
  return counts


def count(alpha=1.0, resolution=224, variant="standard", num_classes=1000, min_depth=8, stem_stride=2,
          kernel_sizes=(3,), kernel_split="equal", model="mobilenet_v1", minimalistic=False, pointwise_groups=1,
          channel_shuffle=False, depthwise_factorization="none"):
  """Totals for one model: mult_adds, params (paper convention), biases, trainable_params, and body_mult_adds (all
  but the classifier). variant, min_depth, kernel_sizes, kernel_split, pointwise_groups, channel_shuffle and
  depthwise_factorization are V1's; minimalistic is V3's."""
  options = models.model_options(model, variant=variant, min_depth=min_depth, kernel_sizes=kernel_sizes,
                                 kernel_split=kernel_split, minimalistic=minimalistic,
                                 pointwise_groups=pointwise_groups, channel_shuffle=channel_shuffle,
                                 depthwise_factorization=depthwise_factorization)
  layers = count_layers(models.layer_spec(model, alpha, num_classes, stem_stride=stem_stride, **options), resolution)
  mult_adds = sum(c.mult_adds for c in layers)
  return {
      "model": model, "alpha": alpha, "resolution": resolution, "variant": variant, "num_classes": num_classes,
      "kernel_sizes": list(kernel_sizes), "kernel_split": kernel_split, "minimalistic": minimalistic,
      "pointwise_groups": pointwise_groups, "channel_shuffle": channel_shuffle,
      "depthwise_factorization": depthwise_factorization, "mult_adds": mult_adds,
      "body_mult_adds": mult_adds - layers[-1].mult_adds,
      "params": sum(c.params for c in layers),
      "biases": sum(c.biases for c in layers),
      "trainable_params": sum(c.trainable_params for c in layers),
      "layers": layers,
  }


def format_layer_table(totals):
  header = f"{'layer':<16}{'type':<14}{'stride':>6}  {'input':>16}  {'output':>16}  {'Mult-Adds':>13}  {'params':>10}"
  lines = [header, "-" * len(header)]
  for c in totals["layers"]:
    l = c.layer
    if l.kind == "fc":
      shape_in, shape_out = f"{l.in_channels}", f"{l.out_channels}"
    else:
      shape_in = f"{c.in_size}x{c.in_size}x{l.in_channels}"
      shape_out = f"{c.out_size}x{c.out_size}x{l.out_channels}"
    mixed = l.kind == "depthwise" and len(l.groups) > 1
    dw = f"dw {l.kernel_size}x1+1x{l.kernel_size}" if l.factorization else f"conv dw {l.kernel_size}x{l.kernel_size}"
    pw = "conv 1x1" + (f" g{l.pointwise_groups}" if l.pointwise_groups > 1 else "") + (" +sh" if l.shuffle else "")
    kind = {"conv": f"conv {l.kernel_size}x{l.kernel_size}", "depthwise": "mixconv" if mixed else dw,
            "pointwise": pw, "fc": "fc", "squeeze_excite": f"se {l.se_channels}"}[l.kind]
    lines.append(f"{l.name:<16}{kind:<14}{l.stride:>6}  {shape_in:>16}  {shape_out:>16}  {c.mult_adds:>13,}  {c.params:>10,}")
    for k, channels in l.groups if mixed else ():  # one line per channel group
      lines.append(f"{'':<16}{'  dw ' + str(k) + 'x' + str(k):<14}{l.stride:>6}  {f'{c.in_size}x{c.in_size}x{channels}':>16}  "
                   f"{f'{c.out_size}x{c.out_size}x{channels}':>16}  {c.out_size ** 2 * k * k * channels:>13,}  "
                   f"{k * k * channels:>10,}")
  lines.append("-" * len(header))
  lines.append(f"total Mult-Adds {totals['mult_adds']:,} ({totals['mult_adds'] / 1e6:.1f}M), "
               f"body only {totals['body_mult_adds']:,}")
  lines.append(f"params (conv + FC weights) {totals['params']:,} ({totals['params'] / 1e6:.2f}M), "
               f"with biases {totals['params'] + totals['biases']:,}, "
               f"trainable (+ BN scale/bias) {totals['trainable_params']:,}")
  return "\n".join(lines)


TABLE2_KINDS = {"Conv 1x1": "pointwise", "Conv DW 3x3": "depthwise", "Conv 3x3": "conv", "Fully Connected": "fc"}


def table2_rows():
  """Table 2 for 1.0 MobileNet-224: (layer type, paper %, our %) for Mult-Adds and params."""
  layers = count()["layers"]
  total_ma, total_p = sum(c.mult_adds for c in layers), sum(c.params for c in layers)
  rows = []
  for row in paper.table2():
    kind = TABLE2_KINDS[row["layer_type"]]
    ma = 100 * sum(c.mult_adds for c in layers if c.layer.kind == kind) / total_ma
    p = 100 * sum(c.params for c in layers if c.layer.kind == kind) / total_p
    rows.append({"layer_type": row["layer_type"], "paper_mult_adds_pct": float(row["percent_mult_adds"]),
                 "mult_adds_pct": ma, "paper_params_pct": float(row["percent_params"]), "params_pct": p,
                 "note": row["note"]})
  return rows


def variant_of(model_name):
  if model_name.startswith("Conv MobileNet"):
    return "full_conv"
  if model_name.startswith("Shallow"):
    return "shallow"
  return "standard"


def paper_rows():
  """Tables 4-9 MobileNet rows: the paper's Mult-Adds (M) and params (M) beside this code's."""
  rows = []
  for row in paper.tables():
    if not row["alpha"]:
      continue  # another architecture, listed in the paper for reference only
    totals = count(float(row["alpha"]), int(row["resolution"]), variant_of(row["model"]))
    rows.append({
        "table": int(row["table"]), "model": row["model"],
        "paper_mult_adds_m": float(row["million_mult_adds"]), "mult_adds_m": totals["mult_adds"] / 1e6,
        "body_mult_adds_m": totals["body_mult_adds"] / 1e6,
        "paper_params_m": float(row["million_params"]), "params_m": totals["params"] / 1e6,
        "note": row["note"],
    })
  return rows


def format_paper():
  lines = ["Table 2 (1.0 MobileNet-224): share by layer type, paper vs this code (%)",
           f"  {'type':<16}{'MA paper':>9}{'ours':>8}{'diff':>7}{'P paper':>9}{'ours':>8}{'diff':>7}  flag"]
  for r in table2_rows():
    d_ma, d_p = r["mult_adds_pct"] - r["paper_mult_adds_pct"], r["params_pct"] - r["paper_params_pct"]
    flag = "KNOWN: " + r["note"] if r["note"] else ("ok" if max(abs(d_ma), abs(d_p)) <= 0.05 else "MISMATCH")
    lines.append(f"  {r['layer_type']:<16}{r['paper_mult_adds_pct']:>9.2f}{r['mult_adds_pct']:>8.2f}{d_ma:>+7.2f}"
                 f"{r['paper_params_pct']:>9.2f}{r['params_pct']:>8.2f}{d_p:>+7.2f}  {flag}")
  lines += ["", "Tables 4-9: Mult-Adds (M, body + FC; body only in brackets) and params (M), paper vs this code",
            f"  {'table':<6}{'model':<22}{'MA paper':>9}{'ours':>9}{'(body)':>10}{'diff':>7}"
            f"{'P paper':>9}{'ours':>8}  flag"]
  for r in paper_rows():
    diff = r["mult_adds_m"] - r["paper_mult_adds_m"]
    digits = len(str(r["paper_params_m"]).split(".")[1])  # compare params at the paper's printed precision
    params_ok = round(r["params_m"], digits) == r["paper_params_m"]
    if params_ok and abs(diff) <= 1.0:
      flag = "ok"
    elif params_ok and abs(r["body_mult_adds_m"] - r["paper_mult_adds_m"]) <= 1.0:
      flag = "ok for the body-only count (the paper left the FC out here)"
    else:
      flag = "MISMATCH"
    flag += f"; KNOWN: {r['note']}" if r["note"] else ""
    lines.append(f"  {r['table']:<6}{r['model']:<22}{r['paper_mult_adds_m']:>9.0f}{r['mult_adds_m']:>9.2f}"
                 f"{'(' + format(r['body_mult_adds_m'], '.2f') + ')':>10}{diff:>+7.2f}"
                 f"{r['paper_params_m']:>9}{r['params_m']:>8.3f}  {flag}")
  return "\n".join(lines)


def mixconv_rows():
  """The MixConv paper's MobileNet V1 points (1.0-224, ImageNet) with this code's Mult-Adds and params."""
  rows = []
  for point in paper.mixconv_points():
    totals = count(kernel_sizes=point["kernel_sizes"], kernel_split=point["split"])
    rows.append({**point, "our_mult_adds": totals["mult_adds"], "params": totals["params"]})
  return rows


def format_mixconv():
  lines = ["MixConv (Tan & Le 2019) Figs. 1, 4, 6: MobileNet V1 1.0-224, every depthwise layer replaced; the paper's",
           "plotted FLOPs (read off its figures) sit ~10-11M above this count (cause unknown): compare differences.",
           f"  {'kernel sizes':<18}{'split':<13}{'FLOPs paper':>12}{'MA ours (M)':>13}{'diff':>7}{'params (M)':>12}"
           f"{'top-1':>7}"]
  for r in mixconv_rows():
    sizes = ",".join(map(str, r["kernel_sizes"]))
    lines.append(f"  {sizes:<18}{r['split']:<13}{r['flops_paper_m']:>12.1f}{r['our_mult_adds'] / 1e6:>13.2f}"
                 f"{r['flops_paper_m'] - r['our_mult_adds'] / 1e6:>+7.1f}{r['params'] / 1e6:>12.3f}{r['top1']:>7.2f}")
  return "\n".join(lines)


def family_rows():
  """TF-Slim's V2 checkpoints and the V3 tables: published Mult-Adds (M) and params (M) beside this code's (1000
  classes; params with biases, as Keras and TF-Slim report them)."""
  rows = []
  for row in paper.v2_checkpoints():
    totals = count(float(row["alpha"]), int(row["resolution"]), model="mobilenet_v2")
    rows.append({"model": row["checkpoint"], "truncated": True, "note": "", **family_figures(row, totals)})
  for row in paper.v3_tables():
    minimalistic = row["minimalistic"] == "true"
    totals = count(float(row["alpha"]), int(row["resolution"]), model=row["model"], minimalistic=minimalistic)
    name = f"{row['model']}{'_minimalistic' if minimalistic else ''}_{row['alpha']}_{row['resolution']}"
    rows.append({"model": name, "truncated": False, "note": row["source_note"], **family_figures(row, totals)})
  return rows


def family_figures(row, totals):
  return {"paper_mult_adds_m": float(row["mult_adds_millions"]), "mult_adds_m": totals["mult_adds"] / 1e6,
          "paper_params_m": float(row["params_millions"]),
          "params_m": (totals["params"] + totals["biases"]) / 1e6}


def format_families():
  lines = ["MobileNet V2 (TF-Slim's checkpoints; Mult-Adds truncated to millions there) and V3 (paper Table 3, TF-Slim",
           "README): Mult-Adds (M) and params with biases (M), published vs this code",
           f"  {'model':<40}{'MA paper':>9}{'ours':>9}{'diff':>8}{'P paper':>9}{'ours':>8}  flag"]
  for r in family_rows():
    diff = r["mult_adds_m"] - r["paper_mult_adds_m"]
    digits = len(str(r["paper_params_m"]).split(".")[1])
    params_ok = round(r["params_m"], digits) == r["paper_params_m"]
    mult_adds_ok = int(r["mult_adds_m"]) == r["paper_mult_adds_m"] if r["truncated"] else abs(diff) <= 0.5
    flag = "ok" if params_ok and mult_adds_ok else "MISMATCH"
    if flag != "ok" and r["note"]:
      flag = f"disagrees with its own architecture; KNOWN: {r['note']}"
    elif r["note"]:
      flag += f" ({r['note']})"
    lines.append(f"  {r['model']:<40}{r['paper_mult_adds_m']:>9.0f}{r['mult_adds_m']:>9.2f}{diff:>+8.2f}"
                 f"{r['paper_params_m']:>9}{r['params_m']:>8.3f}  {flag}")
  return "\n".join(lines)


def parse_kernel_sizes(text):
  """'3,5,7,9' -> (3, 5, 7, 9); the sizes themselves are checked by architecture()."""
  if not text.strip():
    return ()
  try:
    return tuple(int(k) for k in text.split(","))
  except ValueError:
    raise ConfigError(f"kernel_sizes={text!r} is not a comma-separated list of integers; allowed: e.g. 3 or "
                      "3,5,7,9") from None


def parse_alpha(text):
  try:
    return float(text)
  except ValueError:
    raise ConfigError(f"alpha={text!r} is not a number; allowed: a number > 0") from None


def parse_int(name, text):
  try:
    return int(text)
  except ValueError:
    raise ConfigError(f"{name}={text!r} is not an integer") from None


@exit_on_config_error
def main(argv=None):
  parser = OneLineArgumentParser(prog="python -m mnet_jax.count", description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="mobilenet_v1", help=f"the family, one of {', '.join(models.NAMES)}")
  parser.add_argument("--minimalistic", action="store_true", help="V3's variant: no SE, ReLU, 3x3 kernels")
  parser.add_argument("--alpha", default="1.0", help="width multiplier, > 0")
  parser.add_argument("--resolution", default="224", help="input size in pixels, >= 32")
  parser.add_argument("--variant", default="standard", help=f"one of {', '.join(VARIANTS)}")
  parser.add_argument("--num-classes", default="1000")
  parser.add_argument("--min-depth", default="8")
  parser.add_argument("--stem-stride", default="2")
  parser.add_argument("--kernel-sizes", default="3",
                      help="depthwise kernel sizes, comma-separated: one (k x k) or several (MixConv groups)")
  parser.add_argument("--kernel-split", default="equal", help=f"MixConv channel split: {' or '.join(KERNEL_SPLITS)}")
  parser.add_argument("--pointwise-groups", default="1", help="groups of the 1x1 convs of blocks 2-13 (V1)")
  parser.add_argument("--channel-shuffle", action="store_true", help="shuffle the groups after each grouped 1x1")
  parser.add_argument("--depthwise-factorization", default="none",
                      help="'spatial': each k x k depthwise conv as k x 1 then 1 x k (V1)")
  parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
  parser.add_argument("--paper", action="store_true", help="print V1's Tables 2, 4, 5, 6, 7, 9, the MixConv points and the V2 and V3 "
                      "tables beside this code's counts")
  args = parser.parse_args(argv)
  if args.paper:
    print(format_paper() + "\n\n" + format_mixconv() + "\n\n" + format_families())
    return
  totals = count(parse_alpha(args.alpha), parse_int("resolution", args.resolution), args.variant,
                 parse_int("num_classes", args.num_classes), parse_int("min_depth", args.min_depth),
                 parse_int("stem_stride", args.stem_stride), parse_kernel_sizes(args.kernel_sizes), args.kernel_split,
                 args.model, args.minimalistic, parse_int("pointwise_groups", args.pointwise_groups),
                 args.channel_shuffle, args.depthwise_factorization)
  if args.json:
    layers = [{**dataclasses.asdict(c.layer), **{k: v for k, v in dataclasses.asdict(c).items() if k != "layer"}}
              for c in totals["layers"]]
    print(json.dumps({**totals, "layers": layers}))
  else:
    print(format_layer_table(totals))


if __name__ == "__main__":
  main()
