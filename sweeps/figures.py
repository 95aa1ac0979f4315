"""The report's figures: test top-1 against Mult-Adds, params or latency for the sweep's groups (the paper's Figures
4 and 5), an ablation's curves against Mult-Adds, and writing them to files. matplotlib's Figure without pyplot: no
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


def errorbar(axes, xs, groups, style, nonzero=False, **kwargs):
  """The groups' mean top-1 (%) at xs with ±1 std error bars where any group has several seeds (`nonzero`: where
  any of them has a spread)."""
  spread = any(g["test_top1_std"] for g in groups) if nonzero else any(g["test_top1_std"] is not None for g in groups)
  yerr = [100 * (g["test_top1_std"] or 0) for g in groups] if spread else None
  axes.errorbar(xs, [100 * g["test_top1"] for g in groups], yerr=yerr, fmt=style, capsize=3, **kwargs)


def plot(rows, x_key, x_label, overlay, title_note=""):
  """The figure of test top-1 against x_key: for the plain grid a solid line per alpha and a dashed line per
  resolution (the paper's Figure 4 style), for every other series (a variant, a swept field) its own markers; each
  point is the mean over its seeds with a ±1 std error bar; `overlay` adds the paper's ImageNet points."""
  import matplotlib
  figure, axes = new_axes()
  groups = results.points(rows, x_key)
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
  if overlay and x_key in ("mult_adds", "params"):
    slim, tables = paper_match.paper_points()
    axes.plot([p[x_key] for p in slim], [p["top1"] for p in slim], "o", markerfacecolor="none", color="k",
              label="TF-Slim checkpoints (ImageNet)")
    axes.plot([p[x_key] for p in tables], [p["top1"] for p in tables], "kx", markersize=8,
              label="paper Tables 6-7 (ImageNet)")
  axes.set_xscale("log")
  axes.set_xlabel(x_label)
  axes.grid(True, which="both", alpha=0.3)
  return finish(figure, axes, f"Accuracy vs {x_label.split(' (')[0]} (dashed: fixed resolution){title_note}")


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
