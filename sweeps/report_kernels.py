"""The depthwise-kernel part of a sweep's report (experiments/mixconv.py): cells grouped by the fields the sweep
varies, top-1 against Mult-Adds with one curve for vanilla k x k kernels and one per MixConv split (the MixConv
paper's Figure 4 layout), the paper's ImageNet points overlaid on ImageNet sweeps, and where accuracy peaks.

Used by sweeps.report when the cells differ in model.kernel_sizes or model.kernel_split.
"""

import os

from mnet_jax import paper

PLOT = "acc_vs_mult_adds_kernels"
KERNEL_FIELDS = ("model.kernel_sizes", "model.kernel_split")


def flat_get(config, dotted):
  for key in dotted.split("."):
    config = (config or {}).get(key)
  return config


def varied_fields(configs):
  """The dotted config fields whose values differ between cells (seeds and the cells' own names left out)."""
  def flatten(node, prefix=""):
    for key, value in node.items():
      if isinstance(value, dict):
        yield from flatten(value, f"{prefix}{key}.")
      else:
        yield f"{prefix}{key}", value
  values = {}
  for config in configs:
    for dotted, value in flatten(config):
      values.setdefault(dotted, set()).add(repr(value))
  ignored = {"seed", "wandb.name"}
  return sorted(d for d, v in values.items() if len(v) > 1 and d not in ignored)


def group_cells(workdir, rows):
  """sweeps.report's groups (cells that differ only by seed) with a finished cell, each with `fields`: the values
  of the config fields the sweep varies, from its cells' config.json. Returns (fields, groups)."""
  from sweeps.report import group_name, groups_of, read_json  # noqa: PLC0415 (report imports this module)
  configs = {r["cell"]: read_json(os.path.join(workdir, r["cell"], "config.json")) or {} for r in rows}
  fields = varied_fields(configs.values())
  group_config = {}
  for cell, config in configs.items():
    group_config.setdefault(group_name(cell), config)
  groups = [g for g in groups_of(rows) if g["n"]]
  for group in groups:
    group["fields"] = {d: flat_get(group_config[group["cell"]], d) for d in fields}
  return fields, groups


def varies_kernels(workdir, rows):
  from sweeps.report import read_json  # noqa: PLC0415
  configs = [read_json(os.path.join(workdir, r["cell"], "config.json")) or {} for r in rows]
  return any(d in KERNEL_FIELDS for d in varied_fields(configs))


def kernel_key(group):
  sizes = tuple(group["fields"].get("model.kernel_sizes") or (3,))
  split = "vanilla" if len(sizes) == 1 else group["fields"].get("model.kernel_split", "equal")
  return sizes, split


def curves(groups):
  """{'vanilla': [...], 'equal': [...], 'exponential': [...]}: each sorted by the largest kernel (vanilla) or the
  number of groups (MixConv); the 3x3 baseline starts every MixConv curve (g = 1)."""
  lines = {}
  for group in groups:
    sizes, split = kernel_key(group)
    lines.setdefault(split, []).append((sizes, group))
  baseline = next((item for item in lines.get("vanilla", []) if item[0] == (3,)), None)
  for split in ("equal", "exponential"):
    if split in lines and baseline:
      lines[split].append(baseline)
  return {split: sorted(line, key=lambda item: (len(item[0]), item[0][-1])) for split, line in lines.items()}


def label(sizes):
  return f"{sizes[0]}x{sizes[0]}" if len(sizes) == 1 else f"g={len(sizes)}"


def peak_line(split, line):
  """Where top-1 peaks along one curve, in words."""
  if len(line) < 2:
    return None
  best = max(range(len(line)), key=lambda i: line[i][1]["test_top1"])
  sizes, group = line[best]
  name = "vanilla k x k" if split == "vanilla" else f"MixConv ({split} split)"
  where = f"{label(sizes)} ({100 * group['test_top1']:.2f} %)"
  if best == len(line) - 1:
    return f"- {name}: highest at the largest, {where}: no peak within the sweep (accuracy still rising)."
  if best == 0:
    return f"- {name}: highest at the smallest, {where}: larger kernels do not help here."
  after = line[-1]
  return f"- {name}: peaks at {where}, then falls to {100 * after[1]['test_top1']:.2f} % at {label(after[0])}."


PAPER_PEAKS = ("The paper (ImageNet, 1.0-224): vanilla kernels peak at 7x7 (72.03 %) and fall to 70.83 % at 13x13; "
               "MixConv keeps rising to g=6 (72.56 %); the exponential split is about equal to the equal split.")


def plot(groups, path_stem, overlay):
  """Top-1 against Mult-Adds, one curve per kernel kind; the paper's points (its top-1 at this code's Mult-Adds
  for the same network) when overlay."""
  from matplotlib.figure import Figure  # noqa: PLC0415
  figure = Figure(figsize=(7.5, 5.2))
  axes = figure.subplots()
  styles = {"vanilla": ("o-", "C0", "vanilla k x k"), "equal": ("s-", "C3", "MixConv, equal split"),
            "exponential": ("^--", "C2", "MixConv, exponential split")}
  for split, line in curves(groups).items():
    style, color, name = styles[split]
    xs, ys = [g["mult_adds"] for _, g in line], [100 * g["test_top1"] for _, g in line]
    errors = [100 * (g["test_top1_std"] or 0) for _, g in line]
    axes.errorbar(xs, ys, yerr=errors if any(errors) else None, fmt=style, color=color, capsize=3, label=name)
    for (sizes, _), x, y in zip(line, xs, ys):
      axes.annotate(label(sizes), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
  if overlay:
    for split, (marker, color) in {"vanilla": ("o", "C0"), "equal": ("s", "C3"), "exponential": ("^", "C2")}.items():
      points = [p for p in paper.mixconv_points() if (split == "vanilla") == (len(p["kernel_sizes"]) == 1)
                and (split == "vanilla" or p["split"] == split)]
      axes.plot([p["mult_adds"] for p in points], [p["top1"] for p in points], marker, markerfacecolor="none",
                color=color, label=f"paper, {styles[split][2]} (ImageNet)")
  axes.set_xlabel("Mult-Adds")
  axes.set_ylabel("test top-1 (%)")
  axes.grid(True, alpha=0.3)
  axes.set_title("Accuracy vs Mult-Adds: depthwise kernel size and MixConv")
  if axes.get_legend_handles_labels()[0]:
    axes.legend(fontsize=8)
  figure.tight_layout()
  from sweeps.report import save  # noqa: PLC0415 (report imports this module)
  return save(figure, path_stem, ("png", "svg"))


def section(fields, groups, dataset):
  """The markdown section: the groups as a table, the peaks, the paper's."""
  from sweeps.report import number  # noqa: PLC0415
  paper_top1 = {(p["kernel_sizes"], "vanilla" if len(p["kernel_sizes"]) == 1 else p["split"]): p["top1"]
                for p in paper.mixconv_points()}
  from sweeps.report import with_std  # noqa: PLC0415
  lines = [f"Cells grouped by the fields the sweep varies ({', '.join(fields) or 'none'}); top-1 is the mean (± the "
           "standard deviation) over a group's seeds, n of them; error bars: ±1 standard deviation.", "",
           "| " + " | ".join(fields) + " | n | Mult-Adds (M) | params (M) | test top-1 | paper top-1 (ImageNet) |",
           "| " + " | ".join("---" for _ in fields) + " | ---: | ---: | ---: | ---: | ---: |"]
  for group in sorted(groups, key=lambda g: g["mult_adds"]):
    values = " | ".join(str(group["fields"][d]) for d in fields)
    known = paper_top1.get(kernel_key(group))
    lines.append(f"| {values} | {group['n']} | {number(group['mult_adds'], 1e6, 1)} | "
                 f"{number(group['params'], 1e6, 3)} | {with_std(group, 'test_top1', 0.01, suffix=' %')} | "
                 f"{'–' if known is None else f'{known:.2f} %'} |")
  peaks = [p for p in (peak_line(split, line) for split, line in curves(groups).items()) if p]
  lines += ["", "Does accuracy peak?", "", *(peaks or ["- fewer than two finished cells on every curve."]), "",
            PAPER_PEAKS + ("" if dataset == "imagenet2012" else " Its numbers are ImageNet's, for reference only."),
            "", f"![accuracy vs Mult-Adds, kernel sizes (MixConv Figure 4)]({PLOT}.png)"]
  return "\n".join(lines)


def write(workdir, rows, dataset):
  """Plots and returns (markdown section, plot paths) when the sweep varies the depthwise kernels, else None."""
  if not varies_kernels(workdir, rows):
    return None
  fields, groups = group_cells(workdir, rows)
  paths = plot(groups, os.path.join(workdir, PLOT), dataset == "imagenet2012")
  return section(fields, groups, dataset), paths
