r"""Rebuilds a sweep's results.csv, plots and report.md from its cells' metrics.jsonl (at any time, even mid-sweep).

  python -m sweeps.report --workdir runs/demo [--latency] [--export [--export-weights per-channel,per-tensor] ...]

The cells are those listed in DIR/sweep.json (written by sweeps.launch), or else every subdirectory with a
config.json (e.g. converted pretrained checkpoints after `mnet_jax.evaluate`). Cells that differ only by seed form
one group: results.csv has a row per group with the mean, the standard deviation over its finished seeds and their
number n; the figures draw the mean with a ±1 std error bar. Writes DIR/results.csv, DIR/acc_vs_mult_adds.png/.svg
(the paper's Figure 4), DIR/acc_vs_params.png/.svg (Figure 5), DIR/acc_vs_latency.png and DIR/report.md (the
grid's Tables 4-7 beside the paper's); for a sweep over an ablation's fields (sweeps/ablations.py: the depthwise
kernels) also its figure, e.g. DIR/acc_vs_mult_adds_kernels.png/.svg, and section. `--latency` first measures
every finished cell's batch-1 latency again (sweeps/latency.py); `--export` first exports every finished cell not
yet exported with these options to LiteRT (sweeps/exports.py). With exported cells, also DIR/acc_vs_litert.png
(top-1 against LiteRT latency, float32 and int8) and DIR/int8_drop_vs_mult_adds.png, and their section.

The parts: sweeps/results.py (rows, groups of seeds, results.csv), trends.py (statistics), figures.py,
markdown.py, paper_match.py (the paper's rows and points), ablations.py.
"""

import os
import sys

from mnet_jax import process
from mnet_jax.errors import OneLineArgumentParser, exit_on_config_error
from mnet_jax.workdir import write_atomically
from sweeps import ablations, exports, figures, grid, markdown, results

FIGURES = (("mult_adds", "Mult-Adds (log scale)", "acc_vs_mult_adds", ("png", "svg")),
           ("params", "parameters (log scale)", "acc_vs_params", ("png", "svg")),
           ("latency_ms", "latency, batch 1 (ms, log scale)", "acc_vs_latency", ("png",)))


def write(workdir):
  """Writes results.csv (one row per group of seeds), the plots and report.md; returns their paths."""
  workdir = os.path.abspath(workdir)
  rows = results.rows_of(workdir)
  dataset = results.dataset_of(rows)
  imagenet = dataset == "imagenet2012"  # only there are the paper's points comparable
  paths = {"results": os.path.join(workdir, "results.csv"), "report": os.path.join(workdir, "report.md"),
           "plots": []}
  results.write_csv(paths["results"], results.groups_of(rows))
  note = markdown.latency_note(workdir, rows)
  for x_key, x_label, stem, formats in FIGURES:
    latency = x_key == "latency_ms"
    figure = figures.plot(rows, x_key, x_label, imagenet and not latency,
                          f"\n{note.split(' on ')[-1]}" if latency and note else "")
    paths["plots"] += figures.save(figure, os.path.join(workdir, stem), formats)
  sections = []
  for ablation in ablations.studied(rows):
    groups = [g for g in results.groups_of(rows) if g["n"]]
    figure = figures.ablation_plot(ablation, groups, imagenet)
    paths["plots"] += figures.save(figure, os.path.join(workdir, ablation.plot), ("png", "svg"))
    text = markdown.ablation_section(ablation, results.varied_fields(rows), groups, dataset)
    sections.append((ablation.title, text))
  if results.points(rows, "litert_ms"):
    for name, figure in (("acc_vs_litert", figures.litert_plot(rows)), ("int8_drop_vs_mult_adds",
                                                                       figures.int8_drop_plot(rows))):
      paths["plots"] += figures.save(figure, os.path.join(workdir, name), ("png",))
    sections.append(("LiteRT export", markdown.export_section(workdir, rows)))
  write_atomically(paths["report"], markdown.report(workdir, rows, dataset, sections))
  return paths


@exit_on_config_error
def main(argv=None):
  parser = OneLineArgumentParser(prog="python -m sweeps.report", description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="a sweep directory (sweeps.launch --workdir)")
  parser.add_argument("--latency", action="store_true", help="measure every finished cell's batch-1 latency again "
                      "first, one cell at a time (run it with nothing else busy on the machine)")
  exports.add_arguments(parser)
  args = parser.parse_args(argv)
  workdir = os.path.abspath(args.workdir)
  export_kwargs = exports.options(args, sweep_export(workdir)) if args.export else exports.options(args)
  process.setup_process()
  if args.latency:
    from sweeps import latency
    latency.measure_cells(workdir, [r["cell"] for r in results.rows_of(workdir)], again=True)
  failures = []
  if export_kwargs is not None:
    failures = exports.export_cells(workdir, [r["cell"] for r in results.rows_of(workdir)], export_kwargs)
  paths = write(workdir)
  print(f"report: {paths['report']}\nresults: {paths['results']}\nplots: {', '.join(paths['plots'])}")
  if failures:
    sys.exit(f"error: the export of {len(failures)} cells failed: {', '.join(name for name, _ in failures)} "
             f"(errors in <cell>/{exports.ERROR_FILE})")


def sweep_export(workdir):
  """The EXPORT of the sweep file that sweep.json names, where that file is at hand; {} otherwise."""
  spec = (grid.read_description(workdir) or {}).get("spec")
  return exports.declared(spec) if spec and os.path.isfile(spec.partition(":")[0]) else {}


if __name__ == "__main__":
  main()
