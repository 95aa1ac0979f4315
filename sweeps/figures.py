"""The report's figures: test top-1 against Mult-Adds, params or latency for the sweep's groups (the paper's Figures
4 and 5), an ablation's curves against Mult-Adds, top-1 against LiteRT latency and the int8 drop against Mult-Adds
for exported cells, and writing them to files. matplotlib's Figure without pyplot: no
global figure state, no backend switch in notebooks."""

import io

from mnet_jax.workdir import write_atomically
from sweeps import ablations, paper_match, results

MARKERS = "sD^vP*Xh"  # one per series beside the plain grid


def new_axes():
  from matplotlib.figure import Figure
  figure = Figure(figsize=(7.5, 5.2))
  return figure, figure.subplots()


def finish(figure, axes, title):
  axes.set_ylabel("test top-1 (%)")
  axes.set_title(title)
  if axes.get_legend_handles_labels()[0]:
    axes.legend(fontsize=8)
  figure.tight_layout()
  return figure


def errorbar(axes, xs, groups, style, nonzero=False, column="test_top1", **kwargs):
  """The groups' mean `column` (a fraction, drawn in %) at xs with ±1 std error bars where any group has several
  seeds (`nonzero`: where any of them has a spread)."""
  std = f"{column}_std"
  spread = any(g[std] for g in groups) if nonzero else any(g[std] is not None for g in groups)
  yerr = [100 * (g[std] or 0) for g in groups] if spread else None
  axes.errorbar(xs, [100 * g[column] for g in groups], yerr=yerr, fmt=style, capsize=3, **kwargs)


def plot(rows, x_key, x_label, overlay, title_note=""):
  """The figure of test top-1 against x_key: for the plain grid a solid line per alpha and a dashed line per
  resolution (the paper's Figure 4 style), for every other series (a variant, a swept field) its own markers; each
  point is the mean over its seeds with a ±1 std error bar; `overlay` adds the published ImageNet points of the
  family. A sweep of several families is family_plot's."""
  import matplotlib
  groups = results.points(rows, x_key)
  models = list(dict.fromkeys(g["model"] for g in groups))
  if len(models) > 1:
    return family_plot(groups, x_key, x_label, overlay, title_note)
  figure, axes = new_axes()
  colors = matplotlib.colormaps["viridis"]
  series = sorted({g["series"] for g in groups}, key=lambda name: (name != "", name))
  for k, name in enumerate(series):
    members = [g for g in groups if g["series"] == name]
    alphas = sorted({g["alpha"] for g in members if g["alpha"] is not None}, reverse=True)
    for i, alpha in enumerate(alphas):
      line = sorted((g for g in members if g["alpha"] == alpha), key=lambda g: g[x_key])
      xs = [g[x_key] for g in line]
      if name == "":
        errorbar(axes, xs, line, "o-", color=colors(i / max(len(alphas) - 1, 1) * 0.85), label=f"α = {alpha:g}")
      else:
        errorbar(axes, xs, line, MARKERS[(k - 1) % len(MARKERS)] + ":", color=f"C{k % 10}",
                 label=name if i == 0 else None)
    if name != "":
      continue
    for resolution in sorted({g["resolution"] for g in members}, reverse=True):
      line = sorted((g for g in members if g["resolution"] == resolution), key=lambda g: g[x_key])
      if len(line) > 1:
        axes.plot([g[x_key] for g in line], [100 * g["test_top1"] for g in line], "--", color="0.6", linewidth=0.9)
      if line:
        axes.annotate(f"{resolution}px", (line[-1][x_key], 100 * line[-1]["test_top1"]), textcoords="offset points",
                      xytext=(4, -10), fontsize=7, color="0.4")
  if overlay and x_key in ("mult_adds", "params") and models in ([], [results.DEFAULT_MODEL]):
    slim, tables = paper_match.paper_points()
    axes.plot([p[x_key] for p in slim], [p["top1"] for p in slim], "o", markerfacecolor="none", color="k",
              label="TF-Slim checkpoints (ImageNet)")
    axes.plot([p[x_key] for p in tables], [p["top1"] for p in tables], "kx", markersize=8,
              label="paper Tables 6-7 (ImageNet)")
  elif overlay and x_key in ("mult_adds", "params"):
    published = paper_match.family_points().get(models[0], [])
    axes.plot([p[x_key] for p in published], [p["top1"] for p in published], "o", markerfacecolor="none", color="k",
              label=f"{models[0]}, published (ImageNet)")
  axes.set_xscale("log")
  axes.set_xlabel(x_label)
  axes.grid(True, which="both", alpha=0.3)
  return finish(figure, axes, f"Accuracy vs {x_label.split(' (')[0]} (dashed: fixed resolution){title_note}")


def family_plot(groups, x_key, x_label, overlay, title_note=""):
  """Top-1 against x_key for a sweep of several families: a colour per family, a solid line per alpha of its plain
  grid through its resolutions (a marker per alpha); its other series as open markers; `overlay`: each family's
  published ImageNet points as crosses in its colour."""
  figure, axes = new_axes()
  models = list(dict.fromkeys(g["model"] for g in groups))
  published = paper_match.family_points() if overlay and x_key in ("mult_adds", "params") else {}
  for k, model in enumerate(models):
    color, members = f"C{k % 10}", [g for g in groups if g["model"] == model]
    alphas = sorted({g["alpha"] for g in members if g["series"] == ""}, reverse=True)
    for i, alpha in enumerate(alphas):
      line = sorted((g for g in members if g["series"] == "" and g["alpha"] == alpha), key=lambda g: g[x_key])
      errorbar(axes, [g[x_key] for g in line], line, MARKERS[i % len(MARKERS)] + "-", color=color,
               label=f"{model}, α = {alpha:g}", markersize=5, linewidth=1.2)
    others = [g for g in members if g["series"] != ""]
    if others:
      errorbar(axes, [g[x_key] for g in others], others, "o", color=color, markerfacecolor="none",
               label=f"{model}, other settings")
    if model in published:
      points = published[model]
      axes.plot([p[x_key] for p in points], [p["top1"] for p in points], "x", color=color, markersize=7,
                label=f"{model}, published (ImageNet)")
  axes.set_xscale("log")
  axes.set_xlabel(x_label)
  axes.grid(True, which="both", alpha=0.3)
  figure = finish(figure, axes, f"Accuracy vs {x_label.split(' (')[0]}, a colour per family{title_note}")
  axes.legend(fontsize=6, ncol=2)
  return figure


def ablation_plot(ablation, groups, overlay):
  """Top-1 against Mult-Adds, one curve per ablations.Curve with each point labelled; with `overlay` the paper's
  points (its top-1 at this code's Mult-Adds for the same network) as open markers."""
  figure, axes = new_axes()
  for key, line in ablations.group_curves(ablation, groups).items():
    curve = ablation.curves[key]
    xs = [g["mult_adds"] for _, _, g in line]
    errorbar(axes, xs, [g for _, _, g in line], curve.style, nonzero=True, color=curve.color, label=curve.legend)
    for (_, label, g), x in zip(line, xs):
      axes.annotate(label, (x, 100 * g["test_top1"]), textcoords="offset points", xytext=(4, 4), fontsize=7,
                    color=curve.color)
  if overlay and ablation.paper_points:
    points = ablation.paper_points()
    for key, curve in ablation.curves.items():
      mine = [p for p in points if ablation.point(p["values"])[0] == key]
      axes.plot([p["mult_adds"] for p in mine], [p["top1"] for p in mine], curve.style[0], markerfacecolor="none",
                color=curve.color, label=f"paper, {curve.legend} (ImageNet)")
  axes.set_xlabel("Mult-Adds")
  axes.grid(True, alpha=0.3)
  return finish(figure, axes, ablation.plot_title)


def alpha_lines(rows, *keys):
  """{(series, alpha): the groups with a value of every key, in order of the first key}, the plain grid first and
  the widest first within a series."""
  groups = [g for g in results.groups_of(rows) if g["n"] and all(g[k] is not None for k in keys)]
  lines = {}
  for g in sorted(groups, key=lambda g: (g["series"] != "", g["series"], -(g["alpha"] or 0), g[keys[0]])):
    lines.setdefault((g["series"], g["alpha"]), []).append(g)
  return lines


def line_label(series, alpha, what=""):
  return ", ".join(filter(None, [f"α = {alpha:g}", series, what]))


def litert_plot(rows):
  """Top-1 against LiteRT batch-1 latency (1 thread, log scale): per α, a solid curve of the float32 model (the
  run's test top-1) and a dashed one of the int8 model (its own top-1 on the same split)."""
  import matplotlib
  figure, axes = new_axes()
  colors = matplotlib.colormaps["viridis"]
  lines = alpha_lines(rows, "litert_ms")
  alphas = sorted({alpha for _, alpha in lines}, reverse=True)
  for (series, alpha), line in lines.items():
    color = colors(alphas.index(alpha) / max(len(alphas) - 1, 1) * 0.85)
    marker = "o" if series == "" else MARKERS[sorted({s for s, _ in lines}).index(series) % len(MARKERS)]
    errorbar(axes, [g["litert_ms"] for g in line], line, marker + "-", color=color,
             label=line_label(series, alpha, "float32"))
    int8 = sorted((g for g in line if g["litert_int8_ms"] is not None and g["int8_top1"] is not None),
                  key=lambda g: g["litert_int8_ms"])
    if int8:
      errorbar(axes, [g["litert_int8_ms"] for g in int8], int8, marker + "--", column="int8_top1", color=color,
               markerfacecolor="none", label=line_label(series, alpha, "int8"))
  axes.set_xscale("log")
  axes.set_xlabel("LiteRT latency, batch 1, 1 thread (ms, log scale)")
  axes.grid(True, which="both", alpha=0.3)
  return finish(figure, axes, "Accuracy vs LiteRT latency: float32 (solid) and int8 (dashed)")


def int8_drop_plot(rows):
  """float32 top-1 minus int8 top-1 of each export (points) against Mult-Adds (log scale), a curve per α for the
  per-channel int8 model and, where exported, a dotted one for the per-tensor model (then a symlog y axis: the
  per-tensor drop may be tens of points)."""
  import matplotlib
  figure, axes = new_axes()
  colors = matplotlib.colormaps["viridis"]
  lines = alpha_lines(rows, "mult_adds")
  alphas = sorted({alpha for _, alpha in lines}, reverse=True)
  per_tensor = False
  for (series, alpha), line in lines.items():
    color = colors(alphas.index(alpha) / max(len(alphas) - 1, 1) * 0.85)
    for column, style, what in (("int8_drop", "o-", "per-channel"), ("int8_per_tensor_drop", "x:", "per-tensor")):
      points = [g for g in line if g[column] is not None]
      if points:
        per_tensor |= column == "int8_per_tensor_drop"
        errorbar(axes, [g["mult_adds"] for g in points], points, style, column=column, color=color,
                 label=line_label(series, alpha, what))
  axes.axhline(0.0, color="0.5", linewidth=0.8)
  axes.set_xscale("log")
  if per_tensor:
    axes.set_yscale("symlog", linthresh=1.0)
  axes.set_xlabel("Mult-Adds (log scale)")
  axes.grid(True, which="both", alpha=0.3)
  figure = finish(figure, axes, "int8 drop vs Mult-Adds (float32 top-1 minus int8 top-1, one export)")
  axes.set_ylabel("top-1 drop, float32 - int8 (points)")
  figure.tight_layout()
  return figure


def save(figure, path_stem, formats):
  """Writes the figure as path_stem.<format> for each format (atomically); returns the paths."""
  paths = []
  for extension in formats:
    path = f"{path_stem}.{extension}"
    image = io.BytesIO()
    figure.savefig(image, format=extension, dpi=120)
    write_atomically(path, image.getvalue())
    paths.append(path)
  return paths
