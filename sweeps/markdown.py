"""report.md in words: the groups' table, the paper's Tables 4-7 beside them, whether accuracy rises with width and
resolution, each ablation's section, the LiteRT export's section and the figures' links."""

import os
import statistics

from sweeps import ablations, grid, paper_match, results, trends


def number(value, scale=1.0, digits=2, suffix=""):
  return "–" if value is None or value == "" else f"{value / scale:.{digits}f}{suffix}"


def with_std(group, column, scale=1.0, digits=2, suffix=""):
  """"mean ± std" over the group's seeds (just the mean for one seed)."""
  text = number(group[column], scale, digits)
  if group.get(f"{column}_std") is not None:
    text += f" ± {number(group[f'{column}_std'], scale, digits)}"
  return text + suffix if group[column] is not None else text


def top1_text(group):
  return with_std(group, "test_top1", 0.01, suffix=" %")


def results_table(rows):
  """The groups of cells (seeds averaged: mean ± std over n seeds) as a markdown table; with a family other than
  V1, a model column."""
  groups = results.groups_of(rows)
  families = any(g["model"] != results.DEFAULT_MODEL for g in groups)
  lines = ["| cell |" + (" model |" if families else "") + " α | resolution | variant | n | test top-1 | test top-5 | "
           "Mult-Adds (M) | params (M) | latency (ms, batch 1) | train time (s) | images/s | status |",
           "| --- |" + (" --- |" if families else "") + " ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | "
           "---: | ---: | ---: | --- |"]
  for g in groups:
    status = g["status"] + (f": {g['error']}" if g["error"] else "")
    lines.append(f"| {g['cell']} |{' ' + g['model'] + ' |' if families else ''} {number(g['alpha'])} | "
                 f"{g['resolution'] or '–'} | {g['variant'] or '–'} | "
                 f"{g['n']} | {top1_text(g)} | {with_std(g, 'test_top5', 0.01, suffix=' %')} | "
                 f"{number(g['mult_adds'], 1e6, 1)} | {number(g['params'], 1e6, 3)} | "
                 f"{with_std(g, 'latency_ms', digits=3)} | {number(g['train_seconds'], digits=0)} | "
                 f"{number(g['images_per_second'], digits=0)} | {status} |")
  return "\n".join(lines)


def paper_section(rows, dataset):
  """Tables 4-7 as far as the grid covers them, this run's cells beside the paper's rows."""
  tables = paper_match.paper_tables(rows)
  if not tables:
    return "The grid covers none of the paper's Tables 4-7."
  lines = ["Both columns are ImageNet top-1 on the validation split." if dataset == "imagenet2012" else
           "The paper's numbers are ImageNet top-1 at 224/192/160/128 px; this grid's resolutions stand for them at "
           "the same ρ (its largest resolution is ρ = 1), and its Mult-Adds and params are for its own resolution and "
           "number of classes."]
  for table_number, pairs in tables.items():
    lines += ["", f"### Table {table_number}", "",
              "| paper model | paper top-1 | paper Mult-Adds (M) | paper params (M) | this cell | top-1 | "
              "Mult-Adds (M) | params (M) |",
              "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for row, ours in pairs:
      ours = ours or {}
      lines.append(f"| {row['model']} | {row['imagenet_top1']} % | {row['million_mult_adds']} | "
                   f"{row['million_params']} | {ours.get('cell', '–')} | {top1_text(ours) if ours else '– %'} | "
                   f"{number(ours.get('mult_adds'), 1e6, 1)} | {number(ours.get('params'), 1e6, 3)} |")
  return "\n".join(lines)


def fall_text(fall):
  symbol = {"alpha": "α", "resolution": "ρ"}[fall.varied]
  where = ", ".join(filter(None, [fall.model if fall.model != results.DEFAULT_MODEL else "", fall.series]))
  return (f"{where + ', ' if where else ''}at {fall.fixed} {fall.value:g}, top-1 does not rise from "
          f"{symbol}={fall.low[fall.varied]:g} to {symbol}={fall.high[fall.varied]:g} ({top1_text(fall.low)} -> "
          f"{top1_text(fall.high)})")


def trend_section(rows):
  """Whether top-1 rises with α and ρ (the pairs that do not), Spearman with Mult-Adds, each seed alone."""
  checked, exceptions, within_noise = trends.trend_exceptions(rows)
  if not checked:
    return "The grid has no two cells that differ only in α or only in resolution."
  lines = [f"- {fall_text(e)}" for e in exceptions]
  if within_noise:
    lines += ["", "Within the noise (a fall smaller than twice the standard error of the difference of the two "
              "means over their seeds):", ""] + [f"- {fall_text(e)}" for e in within_noise]
  if not exceptions:
    lines.insert(0, f"Yes: test top-1 rises with α at every resolution and with resolution at every α, beyond the "
                 f"noise ({checked} pairs)." if within_noise else
                 f"Yes: test top-1 rises with α at every resolution and with resolution at every α ({checked} pairs).")
  else:
    lines.append(f"\n({len(exceptions)} of {checked} neighbouring pairs out of order.)")
  correlations = [("test top-1", trends.top1_spearman(rows)), ("batch-1 latency", trends.latency_spearman(rows)),
                  ("LiteRT latency (float32, 1 thread)", trends.latency_spearman(rows, "litert_ms")),
                  ("LiteRT latency (int8, 1 thread)", trends.latency_spearman(rows, "litert_int8_ms"))]
  found = [f"{what} {value:.2f}" for what, value in correlations if value is not None]
  if found:
    lines += ["", f"Spearman's rank correlation with Mult-Adds over {len(trends.plain_groups(rows))} groups: "
              f"{', '.join(found)}."]
  return "\n".join(lines + family_table(rows) + each_seed_table(rows))


def family_table(rows):
  """With several families: the trend check and Spearman with Mult-Adds of each family's plain grid (lines)."""
  if len(results.models_of(rows)) < 2:
    return []
  lines = ["", "Each family alone:", "",
           "| family | groups | pairs out of order | Spearman of top-1 with Mult-Adds | of batch-1 latency |",
           "| --- | ---: | ---: | ---: | ---: |"]
  lines += [f"| {model} | {n} | {count} of {checked} | {number(top1)} | {number(latency)} |"
            for model, n, checked, count, top1, latency in trends.per_family(rows)]
  return lines


def each_seed_table(rows):
  """With several seeds: the trend check and Spearman of each seed's cells alone, and their medians (lines)."""
  per_seed = trends.each_seed(rows)
  if not per_seed:
    return []
  lines = ["", "Each seed alone (raw top-1, any fall counts):", "",
           "| seed | Spearman of top-1 with Mult-Adds | pairs out of order |", "| ---: | ---: | ---: |"]
  lines += [f"| {seed} | {number(rho)} | {count} of {checked} |" for seed, rho, count, checked in per_seed]
  known = [rho for _, rho, _, _ in per_seed if rho is not None]
  counts = [count for _, _, count, _ in per_seed]
  lines.append(f"| median | {number(statistics.median(known)) if known else '–'} | {statistics.median(counts):g} |")
  return lines


def latency_note(workdir, rows):
  """How the latencies were measured: runs, device and, on a CPU, threads; None without any."""
  records = [results.read_json(os.path.join(workdir, r["cell"], "latency.json")) for r in rows
             if r["latency_ms"] is not None]
  if not records:
    return None
  devices = sorted({r["device"] + (f", {r['threads']} threads" if r.get("threads") else "") for r in records})
  return (f"median of >= {min(r['runs'] for r in records)} jitted batch-1 forward passes per cell on "
          f"{'; '.join(devices)}")


def export_records(workdir, rows):
  """{cell: export.json's record} of the finished cells that have one."""
  records = {r["cell"]: results.read_json(os.path.join(workdir, r["cell"], results.EXPORT_FILE))
             for r in results.finished(rows)}
  return {cell: record for cell, record in records.items() if record}


def points_text(value):
  return number(value, 0.01, suffix=" points") if value is not None else "–"


def export_section(workdir, rows):
  """The exported cells: top-1 of the JAX run, the float32 and int8 models, the int8 drops, LiteRT latency and size;
  Spearman of LiteRT latency with Mult-Adds; per-tensor against per-channel int8 and the folded depthwise weight
  ranges behind it."""
  groups = [g for g in results.groups_of(rows) if g["n"] and g["litert_ms"] is not None]
  lines = ["Each finished cell exported by `mnet_jax.export` (docs/deployment.md): float32, and full-integer int8 "
           "with a weight scale per output channel (and, where exported, one per tensor), calibrated on training "
           "images; top-1 on the same test split; drop = float32 top-1 - int8 top-1; latency: LiteRT (XNNPACK), "
           "batch 1, 1 thread, mean ± std over seeds of each cell's median.", "",
           "| cell | Mult-Adds (M) | test top-1 (JAX) | float32 top-1 | int8 top-1 | int8 drop | "
           "per-tensor int8 top-1 | per-tensor drop | LiteRT float32 (ms) | LiteRT int8 (ms) | .tflite (KB) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for g in groups:
    lines.append(f"| {g['cell']} | {number(g['mult_adds'], 1e6, 1)} | {top1_text(g)} | "
                 f"{number(g['float32_top1'], 0.01, suffix=' %')} | {with_std(g, 'int8_top1', 0.01, suffix=' %')} | "
                 f"{with_std(g, 'int8_drop', 0.01, suffix=' points')} | "
                 f"{with_std(g, 'int8_per_tensor_top1', 0.01, suffix=' %')} | "
                 f"{with_std(g, 'int8_per_tensor_drop', 0.01, suffix=' points')} | "
                 f"{with_std(g, 'litert_ms', digits=3)} | {with_std(g, 'litert_int8_ms', digits=3)} | "
                 f"{number(g['tflite_bytes'], 1024, 0)} |")
  correlations = [f"{what} {value:.2f}" for what, value in
                  (("float32", trends.latency_spearman(rows, "litert_ms")),
                   ("int8", trends.latency_spearman(rows, "litert_int8_ms"))) if value is not None]
  if correlations:
    lines += ["", f"Spearman's rank correlation of LiteRT latency with Mult-Adds over "
              f"{len([g for g in trends.plain_groups(rows) if g['litert_ms'] is not None])} groups: "
              f"{', '.join(correlations)}."]
  lines += ["", *quantization_lines(groups, export_records(workdir, rows))]
  note = litert_note(export_records(workdir, rows))
  if note:
    lines += ["", f"LiteRT latency: {note}."]
  return "\n".join(lines + ["", "![accuracy vs LiteRT latency](acc_vs_litert.png)", "",
                             "![int8 drop vs Mult-Adds](int8_drop_vs_mult_adds.png)"])


def quantization_lines(groups, records):
  """Per-channel against per-tensor int8 in words, and the folded depthwise layers' range ratios that explain it."""
  lines = []
  for column, what in (("int8_drop", "per-channel"), ("int8_per_tensor_drop", "per-tensor")):
    drops = [g[column] for g in groups if g[column] is not None]
    if drops:
      lines.append(f"- int8 {what}: top-1 drop {points_text(min(drops))} to {points_text(max(drops))} (median "
                   f"{points_text(statistics.median(drops))}) over {len(drops)} groups.")
  ratios = {cell: r["folded_depthwise_range_ratio"] for cell, r in records.items()
            if r.get("folded_depthwise_range_ratio")}
  if ratios:
    largest = {cell: max(layers.items(), key=lambda item: item[1]) for cell, layers in ratios.items()}
    cell, (layer, ratio) = max(largest.items(), key=lambda item: item[1][1])
    medians = [statistics.median(layers.values()) for layers in ratios.values()]
    lines.append(f"- Folded depthwise weights (BatchNorm's γ / sqrt(var + ε) scales each channel): the largest "
                 f"channel's max |w| over the smallest's is {ratio:.0f} in {cell}'s {layer} (the largest), median over "
                 f"layers {min(medians):.1f}-{max(medians):.1f} per cell; one int8 scale per tensor leaves the "
                 f"narrowest channel of a layer about 127 / ratio levels.")
  return lines


def litert_note(records):
  """How the LiteRT latencies were measured (runs, threads, CPU); None without any."""
  runs = [m["runs"] for r in records.values() for m in r.get("float32", {}).get("latency", []) if m["threads"] == 1]
  if not runs:
    return None
  cpus = sorted({f"{r['machine']['cpu']}, {r['machine']['cores']} cores" for r in records.values()})
  return (f"the median of >= {min(runs)} batch-1 invocations per model, each model in a fresh process, one cell at "
          f"a time, on {'; '.join(cpus)}")


def peak_line(ablation, curve, line):
  """Where top-1 peaks along one curve ([(order, label, group)]), in words; None for fewer than two points."""
  if len(line) < 2:
    return None
  best = trends.peak([g["test_top1"] for _, _, g in line])
  _, label, group = line[best]
  where = f"{label} ({100 * group['test_top1']:.2f} %)"
  if best == len(line) - 1:
    return f"- {curve.words}: highest at the largest, {where}: no peak within the sweep (accuracy still rising)."
  if best == 0:
    return f"- {curve.words}: highest at the smallest, {where}: {ablation.smallest_best}."
  return f"- {curve.words}: peaks at {where}, then falls to {100 * line[-1][2]['test_top1']:.2f} % at {line[-1][1]}."


def ablation_section(ablation, fields, groups, dataset):
  """An ablation's section: the groups (with a finished cell) by the fields the sweep varies, the paper's top-1
  beside each, where each curve peaks and what the paper's curves show."""
  known_points = ablation.paper_points() if ablation.paper_points else []
  paper_top1 = {ablation.point(p["values"])[:2]: p["top1"] for p in known_points}
  lines = [f"Cells grouped by the fields the sweep varies ({', '.join(fields) or 'none'}); top-1 is the mean (± the "
           "standard deviation) over a group's seeds, n of them; error bars: ±1 standard deviation.", "",
           "| " + " | ".join(fields) + " | n | Mult-Adds (M) | params (M) | test top-1 | paper top-1 (ImageNet) |",
           "| " + " | ".join("---" for _ in fields) + " | ---: | ---: | ---: | ---: | ---: |"]
  for group in sorted(groups, key=lambda g: g["mult_adds"]):
    if ablation.point(ablations.values_of(ablation, group["config"])) is None:
      continue  # a cell of another ablation
    values = " | ".join(str(results.flat_get(group["config"], d)) for d in fields)
    known = paper_top1.get(ablation.point(ablations.values_of(ablation, group["config"]))[:2])
    lines.append(f"| {values} | {group['n']} | {number(group['mult_adds'], 1e6, 1)} | "
                 f"{number(group['params'], 1e6, 3)} | {with_std(group, 'test_top1', 0.01, suffix=' %')} | "
                 f"{'–' if known is None else f'{known:.2f} %'} |")
  curves = ablations.group_curves(ablation, groups)
  peaks = [p for p in (peak_line(ablation, ablation.curves[key], line) for key, line in curves.items()) if p]
  lines += ["", "Does accuracy peak?", "", *(peaks or ["- fewer than two finished cells on every curve."])]
  if ablation.paper_summary:
    lines += ["", ablation.paper_summary(ablations.paper_curves(ablation)) +
              ("" if dataset == "imagenet2012" else " Its numbers are ImageNet's, for reference only.")]
  return "\n".join(lines + ["", f"![{ablation.image_alt}]({ablation.plot}.png)"])


LEVEL_WIDTH = 0.05  # groups whose Mult-Adds are within 5 % of a plain group's share its Mult-Adds level


def lever_words(group):
  pulled = ablations.levers(ablations.values_of(ablations.GROUPS, group["config"]))
  words = [f"α={group['alpha']:g}"]
  if "model.pointwise_groups" in pulled:
    words.append(f"g={pulled['model.pointwise_groups']}" + (" + shuffle" if "model.channel_shuffle" in pulled else ""))
  if "model.depthwise_factorization" in pulled:
    words.append(f"{pulled['model.depthwise_factorization']} depthwise")
  if "distill.teacher" in pulled:
    words.append("distilled")
  if "model.kernel_sizes" in pulled:
    words.append(f"kernels {pulled['model.kernel_sizes']}")
  return " ".join(words)


def lever_section(groups):
  """At each plain group's Mult-Adds (same resolution), the groups that pull a lever within LEVEL_WIDTH of it: which
  wins and by how much against the seed spread (twice the standard error of the difference of the two means); None
  when no group pulls a lever."""
  finished = [g for g in groups if g["n"] and g["mult_adds"] and g["test_top1"] is not None and g["config"]]
  pulls = lambda g: bool(ablations.levers(ablations.values_of(ablations.GROUPS, g["config"])))
  plain = sorted((g for g in finished if not pulls(g)), key=lambda g: g["mult_adds"])
  pulled = [g for g in finished if pulls(g)]
  if not plain or not pulled:
    return None
  lines = ["At each plain network's Mult-Adds (and resolution), the cells that pull a lever within "
           f"{LEVEL_WIDTH:.0%} of them; the margin is the winner's top-1 minus the plain network's, against twice the "
           "standard error of that difference over the seeds.", "",
           "| Mult-Adds (M) | plain | its top-1 | best lever | its top-1 | margin (points) | noise (points) | verdict |",
           "| ---: | --- | ---: | --- | ---: | ---: | ---: | --- |"]
  for base in plain:
    rivals = [g for g in pulled if g["resolution"] == base["resolution"]
              and abs(g["mult_adds"] / base["mult_adds"] - 1) <= LEVEL_WIDTH]
    if not rivals:
      continue
    best = max(rivals, key=lambda g: g["test_top1"])
    margin = best["test_top1"] - base["test_top1"]
    if base["n"] > 1 and best["n"] > 1:
      noise = 2 * (base["test_top1_std"] ** 2 / base["n"] + best["test_top1_std"] ** 2 / best["n"]) ** 0.5
      verdict = ("the lever wins" if margin > noise else "plain wins" if -margin > noise else "within the noise")
      noise_text = number(noise, 0.01)
    else:
      noise_text, verdict = "–", ("the lever wins" if margin > 0 else "plain wins") + " (one seed: no spread)"
    lines.append(f"| {number(base['mult_adds'], 1e6, 1)} | {lever_words(base)} | {top1_text(base)} | "
                 f"{lever_words(best)} | {top1_text(best)} | {number(margin, 0.01)} | {noise_text} | {verdict} |")
  return "\n".join(lines) if len(lines) > 4 else None


def report(workdir, rows, dataset, sections=()):
  """report.md's text; `sections` are (heading, markdown) pairs put after the figures."""
  description = grid.read_description(workdir) or {}
  name = description.get("name", os.path.basename(workdir))
  counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "incomplete", "pending")}
  seeds = description.get("seeds", 1)
  lines = [f"# Sweep {name}", "",
           f"Dataset `{dataset}`; {len(rows)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) +
           (f"; {seeds} seeds per cell, shown as mean ± standard deviation over the n finished ones." if seeds > 1
            else "."),
           f"Rebuilt by `python -m sweeps.report --workdir {workdir}` from the cells' metrics.jsonl.", "",
           results_table(rows), "", "## Beside the paper", "", paper_section(rows, dataset), "",
           "## Does accuracy rise with width and resolution?", "", trend_section(rows), "",
           "## Figures", "", "![accuracy vs Mult-Adds (Figure 4)](acc_vs_mult_adds.png)", "",
           "![accuracy vs params (Figure 5)](acc_vs_params.png)", "", "![accuracy vs latency](acc_vs_latency.png)"]
  note = latency_note(workdir, rows)
  if note:
    lines += ["", f"Latency: {note}, one cell at a time after the cells trained "
              f"(`python -m sweeps.report --workdir {workdir} --latency` measures it again)."]
  levels = lever_section(results.groups_of(rows))
  for heading, text in [*sections, *([("Which lever wins at each Mult-Adds level", levels)] if levels else [])]:
    lines += ["", f"## {heading}", "", text]
  return "\n".join(lines) + "\n"
