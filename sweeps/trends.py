"""The report's statistics over a sweep's groups of seeds: whether top-1 rises with width and resolution beyond the
noise, rank correlations with Mult-Adds, each seed alone, and where a curve peaks. Numbers only; sweeps.markdown
puts them into words."""

import dataclasses
import math

from sweeps import results


def spearman(xs, ys):
  """Spearman's rank correlation (ties get their mean rank), or None for fewer than 3 points or a constant."""
  from scipy import stats
  if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
    return None
  return float(stats.spearmanr(xs, ys).statistic)


def out_of_order(low, high):
  """Whether top-1 falls from `low` to `high` (the larger network) by more than the noise: when both groups have
  >= 2 seeds, by more than twice the standard error of the difference of their means; with one seed, at all."""
  drop = low["test_top1"] - high["test_top1"]
  if low["n"] < 2 or high["n"] < 2:
    return drop >= 0
  return drop > 2 * math.sqrt(low["test_top1_std"] ** 2 / low["n"] + high["test_top1_std"] ** 2 / high["n"])


@dataclasses.dataclass(frozen=True)
class Fall:
  """Top-1 does not rise from group `low` to `high` of one series, which differ only in `varied`."""
  series: str
  fixed: str  # "resolution" or "alpha"
  value: float  # of the fixed field
  varied: str
  low: dict
  high: dict
  model: str = results.DEFAULT_MODEL  # the family of both


def trend_exceptions(rows):
  """Where test top-1 (mean over seeds) does not rise with alpha at a fixed resolution, or with resolution at a
  fixed alpha, within each series of each family: (number of neighbouring pairs checked, the Falls out of order,
  the Falls smaller than the noise)."""
  groups = results.points(rows, "test_top1")
  exceptions, within_noise, checked = [], [], 0
  for model, series in sorted({(g["model"], g["series"]) for g in groups}):
    members = [g for g in groups if g["series"] == series and g["model"] == model]
    for fixed, varied in (("resolution", "alpha"), ("alpha", "resolution")):
      for value in sorted({g[fixed] for g in members}):
        line = sorted((g for g in members if g[fixed] == value), key=lambda g: g[varied])
        for low, high in zip(line, line[1:]):
          checked += 1
          if high["test_top1"] > low["test_top1"]:
            continue
          fall = Fall(series, fixed, value, varied, low, high, model)
          (exceptions if out_of_order(low, high) else within_noise).append(fall)
  return checked, exceptions, within_noise


def plain_groups(rows):
  """The groups of the sweep's plain grid (no series) with a top-1 and Mult-Adds."""
  return [g for g in results.points(rows, "test_top1") if g["series"] == "" and g["mult_adds"] is not None]


def top1_spearman(rows):
  plain = plain_groups(rows)
  return spearman([g["mult_adds"] for g in plain], [g["test_top1"] for g in plain])


def latency_spearman(rows, column="latency_ms"):
  """Spearman of a latency column (latency_ms, litert_ms, litert_int8_ms) with Mult-Adds over the plain grid."""
  timed = [g for g in plain_groups(rows) if g[column] is not None]
  return spearman([g["mult_adds"] for g in timed], [g[column] for g in timed])


def per_family(rows):
  """[(family, groups, pairs checked, pairs out of order, Spearman of top-1 with Mult-Adds, of batch-1 latency with
  Mult-Adds)] over each family's plain grid, in the sweep's order."""
  table = []
  for model in results.models_of(rows):
    mine = [r for r in rows if r.get("model", results.DEFAULT_MODEL) == model]
    checked, exceptions, _ = trend_exceptions(mine)
    table.append((model, len(plain_groups(mine)), checked, len(exceptions), top1_spearman(mine),
                  latency_spearman(mine)))
  return table


def each_seed(rows):
  """With several seeds: [(seed, Spearman of its cells' top-1 with Mult-Adds, pairs out of order (any fall counts),
  pairs checked)] for each seed's cells alone; [] with one seed."""
  seeds = sorted({r["seed"] for r in results.finished(rows)})
  if len(seeds) < 2:
    return []
  per_seed = []
  for seed in seeds:
    mine = [r for r in rows if r["seed"] == seed]
    checked, exceptions, _ = trend_exceptions(mine)
    per_seed.append((seed, top1_spearman(mine), len(exceptions), checked))
  return per_seed


def peak(values):
  """The index of the largest value (the first of equal ones)."""
  return max(range(len(values)), key=lambda i: values[i])
