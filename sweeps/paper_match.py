"""The MobileNet paper's ImageNet results matched to a sweep's groups: its Tables 4-7 row by row, and its points
(TF-Slim's 16 checkpoints, Tables 6-7) for the figures' overlay."""

from mnet_jax import paper
from mnet_jax.count import variant_of
from sweeps import results

PAPER_RESOLUTIONS = (224, 192, 160, 128)  # the paper's rho = 1, 6/7, 5/7, 4/7


def paper_points():
  """The paper's ImageNet points: TF-Slim's 16 published checkpoints (Figure 4/5's grid) and Tables 6-7."""
  slim = [{"alpha": float(r["alpha"]), "resolution": int(r["resolution"]), "mult_adds": float(r["million_macs"]) * 1e6,
           "params": float(r["million_params"]) * 1e6, "top1": float(r["top1"])} for r in paper.slim_checkpoints()]
  tables = [{"alpha": float(r["alpha"]), "resolution": int(r["resolution"]),
             "mult_adds": float(r["million_mult_adds"]) * 1e6, "params": float(r["million_params"]) * 1e6,
             "top1": float(r["imagenet_top1"])}
            for r in paper.tables() if r["table"] in ("6", "7")]
  return slim, tables


def family_points():
  """{family: its published ImageNet points (alpha, resolution, mult_adds, params, top1)}: MobileNet V1's TF-Slim
  checkpoints and Tables 6-7, V2's TF-Slim checkpoint grid, V3's Table 3 (mnet_jax/paper_data)."""
  point = lambda r, top1: {"alpha": float(r["alpha"]), "resolution": int(r["resolution"]),  # noqa: E731
                           "mult_adds": float(r["mult_adds_millions"]) * 1e6,
                           "params": float(r["params_millions"]) * 1e6, "top1": float(top1)}
  slim, tables = paper_points()
  points = {"mobilenet_v1": slim + tables, "mobilenet_v2": [point(r, r["top1"]) for r in paper.v2_checkpoints()]}
  for r in paper.v3_tables():
    name = r["model"] + ("_minimalistic" if r["minimalistic"] == "true" else "")
    points.setdefault(name, []).append(point(r, r["top1_paper"] or r["top1_slim"]))
  return points


def resolution_for(paper_resolution, our_resolutions):
  """This grid's resolution for one of the paper's: the same value, or the one at the same rho = resolution / 224,
  taking the grid's largest resolution as its rho = 1 (Fashion-MNIST's 56/48/40/32 for 224/192/160/128)."""
  if paper_resolution in our_resolutions:
    return paper_resolution
  same_rho = paper_resolution * our_resolutions[0] / PAPER_RESOLUTIONS[0]
  return int(same_rho) if same_rho in our_resolutions else None


def paper_tables(rows):
  """{table number: [(paper row, our group or None)]} for Tables 4-7 where the grid has at least one matching cell."""
  groups = results.groups_of(rows)
  our_resolutions = sorted({g["resolution"] for g in groups if g["resolution"] is not None}, reverse=True)
  tables = {}
  for row in paper.tables():
    if row["table"] not in ("4", "5", "6", "7") or not row["alpha"]:
      continue
    resolution = resolution_for(int(row["resolution"]), our_resolutions)
    ours = [g for g in groups if g["alpha"] == float(row["alpha"]) and g["resolution"] == resolution and
            g["variant"] == variant_of(row["model"]) and g["model"] == results.DEFAULT_MODEL]
    tables.setdefault(int(row["table"]), []).append((row, ours[0] if ours else None))
  return {n: pairs for n, pairs in sorted(tables.items()) if any(ours for _, ours in pairs)}
