"""Ablations: a few config fields whose groups the report draws as curves of top-1 against Mult-Adds, with a section
of their own (sweeps.figures.ablation_plot, sweeps.markdown.ablation_section).

An Ablation says which fields it studies, and for the values of those fields (and of CONTEXT: the cell's width,
resolution and other levers) in a group: which curve the group is on, where along it and with what label, or None
for a group that belongs to another ablation (it is left out of this one's figure and table). A new one is an Ablation in ABLATIONS: its fields, its `point` function
and its curves' names; the report shows it for every sweep whose cells differ in one of its fields.
"""

import dataclasses
from typing import Callable, Optional

from mnet_jax import paper
from sweeps import results, trends


@dataclasses.dataclass(frozen=True)
class Curve:
  style: str  # matplotlib format: marker, then line
  color: str
  legend: str  # in the figure's legend
  words: str  # in the section's sentences


@dataclasses.dataclass(frozen=True)
class Ablation:
  title: str  # the report section's heading
  fields: tuple  # dotted config fields; values are the config's (lists for tuples)
  point: Callable  # {field: value} -> (curve key, order along the curve, label of the point), or None
  curves: dict  # curve key -> Curve, in the order of the paper overlay
  plot: str  # file stem of the figure
  plot_title: str
  image_alt: str  # the figure's alt text in report.md
  smallest_best: str  # what it means when a curve peaks at its first point
  joins: Callable = lambda point: ()  # (curve, order, label) -> the other curves that also start at this point
  paper_points: Optional[Callable] = None  # () -> [{"values", "mult_adds", "top1" (%)}], ImageNet
  paper_summary: Optional[Callable] = None  # the paper's curves (curves() of paper_points) -> one sentence


# Fields every point function also sees: where the cell sits on the grid and which other lever it pulls.
CONTEXT = ("alpha", "resolution", "model.pointwise_groups", "model.channel_shuffle", "model.depthwise_factorization",
           "distill.teacher", "model.kernel_sizes")


def values_of(ablation, config):
  return {dotted: results.flat_get(config, dotted) for dotted in (*ablation.fields, *CONTEXT)}


def levers(values):
  """The levers a cell pulls besides width and resolution, as {field: value} (empty for a plain cell)."""
  defaults = {"model.pointwise_groups": 1, "model.channel_shuffle": False, "model.depthwise_factorization": "none",
              "distill.teacher": None, "model.kernel_sizes": (3,)}
  normal = lambda value: tuple(value) if isinstance(value, list) else value  # config.json holds tuples as lists
  return {f: values[f] for f, d in defaults.items() if values.get(f) is not None and normal(values[f]) != d}


def curves(ablation, records, values=lambda r: r["values"]):
  """{curve: [(order, label, record)]} sorted along each curve, the curves in the order records first reach them;
  a record whose point joins other curves starts those that exist."""
  lines, joined = {}, []
  for record in records:
    point = ablation.point(values(record))
    if point is None:  # a cell of another ablation
      continue
    curve, order, label = point
    lines.setdefault(curve, []).append((order, label, record))
    joined += [(other, (order, label, record)) for other in ablation.joins((curve, order, label))]
  for other, item in joined:
    if other in lines:
      lines[other].append(item)
  return {curve: sorted(line, key=lambda item: item[0]) for curve, line in lines.items()}


def group_curves(ablation, groups):
  return curves(ablation, groups, lambda g: values_of(ablation, g["config"]))


def paper_curves(ablation):
  return curves(ablation, ablation.paper_points()) if ablation.paper_points else {}


def studied(rows):
  """The ablations whose fields the sweep's started cells differ in."""
  varied = set(results.varied_fields(rows))
  return [a for a in ABLATIONS if varied & set(a.fields)]


# --- depthwise kernel sizes and MixConv (experiments/mixconv.py) -------------------------------------------------

def kernel_point(values):
  """Vanilla k x k along k; MixConv (several kernel sizes) along its number of groups g, one curve per split."""
  sizes = tuple(values.get("model.kernel_sizes") or (3,))
  if len(sizes) == 1:
    return "vanilla", (1, sizes[0]), f"{sizes[0]}x{sizes[0]}"
  return values.get("model.kernel_split") or "equal", (len(sizes), sizes[-1]), f"g={len(sizes)}"


def kernel_joins(point):
  return ("equal", "exponential") if point[:2] == ("vanilla", (1, 3)) else ()  # 3x3 is MixConv with g = 1


def mixconv_points():
  return [{"values": {"model.kernel_sizes": p["kernel_sizes"], "model.kernel_split": p["split"]},
           "mult_adds": p["mult_adds"], "top1": p["top1"]} for p in paper.mixconv_points()]


SPLITS_ALIKE = 0.2  # top-1 points between the two splits at the same g that still read as "about equal"


def rise_or_peak(subject, line, plural):
  """"<subject> keep(s) rising to <last>" or "<subject> peak(s) at <best> and fall(s) to <top-1> at <last>"."""
  best = trends.peak([p["top1"] for _, _, p in line])
  at = f"{line[best][1]} ({line[best][2]['top1']:.2f} %)"
  s = "" if plural else "s"
  if best == len(line) - 1:
    return f"{subject} keep{s} rising to {at}"
  return f"{subject} peak{s} at {at} and fall{s} to {line[-1][2]['top1']:.2f} % at {line[-1][1]}"


def mixconv_summary(lines):
  """What the MixConv paper's curves show, from its points."""
  equal = lines["equal"]
  text = f"{rise_or_peak('vanilla kernels', lines['vanilla'], True)}; {rise_or_peak('MixConv', equal, False)}"
  by_order = {order: p["top1"] for order, _, p in equal}  # the exponential split against the equal one, same g
  gaps = [p["top1"] - by_order[order] for order, _, p in lines.get("exponential", [])[1:] if order in by_order]
  if gaps:
    text += ("; the exponential split is about equal to the equal split" if max(map(abs, gaps)) < SPLITS_ALIKE else
             f"; the exponential split is {'above' if sum(gaps) > 0 else 'below'} the equal split")
  return f"The paper (ImageNet, 1.0-224): {text}."


KERNELS = Ablation(
    title="Depthwise kernel sizes (MixConv)", fields=("model.kernel_sizes", "model.kernel_split"),
    point=kernel_point, joins=kernel_joins,
    curves={"vanilla": Curve("o-", "C0", "vanilla k x k", "vanilla k x k"),
            "equal": Curve("s-", "C3", "MixConv, equal split", "MixConv (equal split)"),
            "exponential": Curve("^--", "C2", "MixConv, exponential split", "MixConv (exponential split)")},
    plot="acc_vs_mult_adds_kernels", plot_title="Accuracy vs Mult-Adds: depthwise kernel size and MixConv",
    image_alt="accuracy vs Mult-Adds, kernel sizes (MixConv Figure 4)", smallest_best="larger kernels do not help here",
    paper_points=mixconv_points, paper_summary=mixconv_summary)

# --- the separable block and distillation (experiments/ablations.py, experiments/distill.py) ---------------------

def width_label(values):
  return f"α={values.get('alpha'):g}"


def grouped_point(values):
  """Plain cells (any width) on one curve, grouped ones on one curve per shuffle setting, along Mult-Adds (alpha^2 / g
  orders them as the pointwise convs dominate); None for a cell that pulls another lever."""
  pulled = levers(values)
  if set(pulled) - {"model.pointwise_groups", "model.channel_shuffle"}:
    return None
  groups = values.get("model.pointwise_groups") or 1
  alpha = values.get("alpha") or 1.0
  order = (alpha * alpha / groups, alpha)
  if groups == 1:
    return "plain", order, width_label(values)
  return ("shuffle" if values.get("model.channel_shuffle") else "grouped"), order, f"{width_label(values)} g={groups}"


GROUPS = Ablation(
    title="Grouped pointwise convs and channel shuffle", fields=("model.pointwise_groups", "model.channel_shuffle"),
    point=grouped_point,
    curves={"plain": Curve("o-", "C0", "plain (narrower α)", "plain networks"),
            "grouped": Curve("s-", "C3", "grouped 1x1", "grouped 1x1 convs"),
            "shuffle": Curve("^--", "C2", "grouped 1x1 + shuffle", "grouped 1x1 convs with shuffle")},
    plot="acc_vs_mult_adds_groups", plot_title="Accuracy vs Mult-Adds: grouped pointwise convs (ShuffleNet)",
    image_alt="accuracy vs Mult-Adds, grouped pointwise convs", smallest_best="fewer Mult-Adds lose nothing here")


def factorization_point(values):
  pulled = levers(values)
  if set(pulled) - {"model.depthwise_factorization"}:
    return None
  return pulled.get("model.depthwise_factorization", "none"), (values.get("alpha") or 1.0,), width_label(values)


FACTORIZATION = Ablation(
    title="Spatially separable depthwise convs", fields=("model.depthwise_factorization",),
    point=factorization_point,
    curves={"none": Curve("o-", "C0", "k x k depthwise", "k x k depthwise convs"),
            "spatial": Curve("s--", "C3", "k x 1 then 1 x k", "spatially separable depthwise convs")},
    plot="acc_vs_mult_adds_factorization", plot_title="Accuracy vs Mult-Adds: spatially separable depthwise convs",
    image_alt="accuracy vs Mult-Adds, spatially separable depthwise", smallest_best="the narrowest network wins here")


def distill_point(values):
  pulled = levers(values)
  if set(pulled) - {"distill.teacher"}:
    return None
  label = f"{width_label(values)} {values.get('resolution')}px"
  return ("teacher" if pulled else "none"), (values.get("alpha") or 1.0, values.get("resolution") or 0), label


DISTILL = Ablation(
    title="Distillation", fields=("distill.teacher",), point=distill_point,
    curves={"none": Curve("o-", "C0", "no teacher", "no teacher"),
            "teacher": Curve("s--", "C3", "student of the teacher", "students of the teacher")},
    plot="acc_vs_mult_adds_distill", plot_title="Accuracy vs Mult-Adds: distillation",
    image_alt="accuracy vs Mult-Adds, distillation", smallest_best="the smallest student is the best here")

ABLATIONS = (KERNELS, GROUPS, FACTORIZATION, DISTILL)
