"""The docs: every relative link in README.md and docs/*.md resolves, the README stays short, the product holds
no words about how its work was organised (history lives in docs/perf-log.md only), command-line.md names every
entry point and no other, and the code names the docs quote (metric keys, flags, config fields) exist. The log
states the past, so its names are not checked."""

import ast
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README_MAX_LINES = 120
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# The reviewers' grep, spelled so that this file does not match it.
HISTORY_WORDS = "sess" "ion|iss" "ue [0-9]"
HISTORY_EXCEPTIONS = ("start_new_" "sess" "ion",)
HISTORY_FILE = "docs/perf-log.md"
ENTRY_PACKAGES = ("mnet_jax", "sweeps")
COMMAND_LINE_DOC = "docs/command-line.md"
MODULE_COMMAND = re.compile(r"python -m ((?:mnet_jax|sweeps)(?:\.\w+)*)")
SCRIPT_COMMAND = re.compile(r"python (benchmarks/\w+\.py)")
FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")
# Keys the code writes, as the docs quote them; `train_and_evaluate` and the like are skipped as code names.
METRIC_KEY = re.compile(r"`((?:test|train|ema)_[a-z0-9_]+)`")
# The prefixes the code puts before keys, outermost first: the final line's `test_` (workdir.final_record) wraps an
# evaluation, whose EMA keys carry `ema_` (train.evaluate_all).
WRITE_PREFIXES = ("test_", "ema_")
CONFIG_FIELD = re.compile(r"(?<![\w/.])config\.([a-zA-Z_]\w*(?:\.[a-zA-Z_]\w*)*)")
CONFIG_PLACEHOLDERS = {"FIELD", "section", "field", "json"}  # `--config.FIELD=VALUE`, `config.json`


def doc_files():
  return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(path):
  """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
  seen, found = {}, set()
  for line in outside_code(path.read_text()):
    if match := re.match(r"#{1,6}\s+(.*?)\s*$", line):
      slug = "".join(c for c in match.group(1).lower() if c.isalnum() or c in "-_ ").replace(" ", "-")
      found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
      seen[slug] = seen.get(slug, 0) + 1
  return found


def outside_code(text):
  fenced = False
  for line in text.splitlines():
    if line.lstrip().startswith("```"):
      fenced = not fenced
    elif not fenced:
      yield line


def broken_links(path):
  """The relative links in a Markdown file whose file, or heading anchor in a Markdown file, does not exist."""
  broken = []
  for line in outside_code(path.read_text()):
    for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
      if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        continue
      file_part, _, anchor = target.partition("#")
      linked = (path.parent / file_part).resolve() if file_part else path
      if not linked.exists():
        broken.append(target)
      elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
        broken.append(target)
  return broken


def history_words(repo):
  """Lines and file names in the repository's tracked files that name work periods or issue numbers."""
  if shutil.which("git") is None or subprocess.run(["git", "rev-parse"], cwd=repo, capture_output=True).returncode:
    pytest.skip("not a git checkout")
  grep = subprocess.run(["git", "grep", "-nIiE", HISTORY_WORDS, "--", ".", f":!{HISTORY_FILE}"], cwd=repo,
                        capture_output=True, text=True)
  names = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout
  hits = grep.stdout.splitlines() + [n for n in names.splitlines() if re.search(HISTORY_WORDS, n, re.IGNORECASE)]
  return [hit for hit in hits if not any(word in hit for word in HISTORY_EXCEPTIONS)]


def present_docs():
  """The docs that state the present: all but the dated log."""
  return [path for path in doc_files() if path != ROOT / HISTORY_FILE]


def entry_points(root):
  """Modules under mnet_jax/ and sweeps/ that run as `python -m`: a `__main__` guard, or a package's __main__.py."""
  found = set()
  for package in ENTRY_PACKAGES:
    for path in (root / package).rglob("*.py"):
      parts = path.relative_to(root).with_suffix("").parts
      if path.name == "__main__.py":
        found.add(".".join(parts[:-1]))
      elif re.search(r"^if __name__ == [\"']__main__[\"']:", path.read_text(), re.MULTILINE):
        found.add(".".join(parts))
  return found


def code_pieces(text):
  """The code in a Markdown text: each fenced line whole (continuation lines joined), and each `span` outside fences."""
  fenced, pending = False, ""
  for line in text.splitlines():
    if line.lstrip().startswith("```"):
      fenced = not fenced
    elif fenced:
      pending += line
      if line.rstrip().endswith("\\"):
        pending = pending.rstrip()[:-1] + " "
      else:
        yield pending
        pending = ""
    else:
      yield from re.findall(r"`([^`]+)`", line)


def commands(text):
  """(entry point or script, the flags written after it) for each command line quoted in a Markdown text."""
  for piece in code_pieces(text):
    starts = [(m.start(), m.end(), m.group(1)) for pattern in (MODULE_COMMAND, SCRIPT_COMMAND)
              for m in pattern.finditer(piece)]
    for start, end, name in starts:
      following = [s for s, _, _ in starts if s > start]
      rest = piece[end:min(following, default=len(piece))]
      rest = re.split(r"\s#", rest)[0]  # a trailing comment
      yield name, [flag for flag in FLAG.findall(rest) if not flag.startswith("--config.")]


def source_flags(path):
  """The flags a command-line file accepts: its add_argument names (and --no-X of a BooleanOptionalAction), or
  where it has none, the flags of its usage line."""
  text = path.read_text()
  flags = set()
  for node in ast.walk(ast.parse(text)):
    if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
      names = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")]
      flags.update(names)
      if any(k.arg == "action" and getattr(k.value, "attr", None) == "BooleanOptionalAction" for k in node.keywords):
        flags.update("--no-" + name[2:] for name in names)
  for helper in re.findall(r"\b(\w+)\.add_arguments\(parser\)", text):  # flags shared through a helper module
    for package in ("sweeps", "mnet_jax"):
      shared = ROOT / package / f"{helper}.py"
      if shared.exists():
        flags.update(node.value for node in ast.walk(ast.parse(shared.read_text()))
                     if isinstance(node, ast.Constant) and re.fullmatch(r"--[a-z][a-z0-9-]*", str(node.value)))
  if not flags:
    for usage in re.findall(r"usage: [^\"\n]*", text):
      flags.update(FLAG.findall(usage))
  return flags


def entry_point_file(root, name):
  if name.endswith(".py"):
    return root / name
  path = root.joinpath(*name.split("."))
  return path / "__main__.py" if path.is_dir() else path.with_suffix(".py")


def all_flags(root):
  """Every flag of every entry point and script, and of the shell scripts in benchmarks/ (`--dry`)."""
  files = [entry_point_file(root, name) for name in entry_points(root)] + sorted((root / "benchmarks").glob("*.py"))
  flags = set().union({"--help"}, *(source_flags(path) for path in files))
  for script in (root / "benchmarks").glob("*.sh"):
    flags.update(re.findall(r"== \"(--[\w-]+)\"", script.read_text()))
  return flags


def unknown_flags(text, root):
  """Flags quoted in a Markdown text that their command, or (a flag quoted alone) every command, does not accept."""
  unknown = []
  for name, flags in commands(text):
    path = entry_point_file(root, name)
    accepted = source_flags(path) if path.exists() else set()
    unknown += [f"{name} {flag}" for flag in flags if flag not in accepted]
  known = all_flags(root)
  for piece in code_pieces(text):
    if piece.startswith("--") and not piece.startswith("--config."):
      unknown += [flag for flag in FLAG.findall(piece)[:1] if flag not in known]
  return unknown


def source_names(root):
  """Whole-identifier string constants and def/class names in the code that writes metrics (mnet_jax/, sweeps/)."""
  strings, definitions = set(), set()
  for package in ENTRY_PACKAGES:
    for path in (root / package).rglob("*.py"):
      for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"\w+", node.value):
          strings.add(node.value)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
          definitions.add(node.name)
  return strings, definitions


def composed_key(key, strings, prefixes=WRITE_PREFIXES):
  """Whether the code writes `key` as its prefixes (in their nesting order) before a plain key of its own."""
  for i, prefix in enumerate(prefixes):
    if key.startswith(prefix):
      rest = key[len(prefix):]
      if (rest in strings and not rest.startswith(WRITE_PREFIXES)) or composed_key(rest, strings, prefixes[i + 1:]):
        return True
  return False


def unknown_metric_keys(text, root):
  strings, definitions = source_names(root)
  return [key for key in METRIC_KEY.findall(text)
          if key not in strings and key not in definitions and not composed_key(key, strings)]


def config_fields():
  """Every field of every packaged config, dotted ("optim.base_learning_rate")."""
  from mnet_jax import config_file

  def dotted(tree, prefix=""):
    for key, value in tree.items():
      yield prefix + key
      if isinstance(value, dict):
        yield from dotted(value, f"{prefix}{key}.")

  return set().union(*(set(dotted(config_file.load(name).to_dict())) for name in config_file.packaged_names()))


def unknown_config_fields(text, fields):
  names = [name for piece in code_pieces(text) for name in CONFIG_FIELD.findall(piece)]
  return [name for name in names if name not in fields and not CONFIG_PLACEHOLDERS & set(name.split("."))]


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
  assert broken_links(path) == []


def test_readme_is_short():
  lines = len((ROOT / "README.md").read_text().splitlines())
  assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES}"


def test_no_history_words_outside_the_log():
  assert history_words(ROOT) == []


def test_link_check_finds_a_missing_file_and_anchor(tmp_path):
  (tmp_path / "a.md").write_text("# Top\n\n## Two words\n")
  (tmp_path / "b.md").write_text("[ok](a.md#two-words) [self](#x) [web](https://example.org) `[code](no.md)`\n"
                                 "[gone](missing.md) [bad anchor](a.md#three) ![pic](fig.png)\n\n# X\n")
  assert broken_links(tmp_path / "b.md") == ["missing.md", "a.md#three", "fig.png"]


def test_history_grep_finds_a_planted_word(tmp_path):
  git = lambda *args: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                                     check=True, capture_output=True)
  git("init", "-q")
  (tmp_path / "docs").mkdir()
  (tmp_path / HISTORY_FILE).write_text("measured in Sess" "ion 3\n")
  (tmp_path / "code.py").write_text("subprocess.Popen(cmd, start_new_sess" "ion=True)\n")
  (tmp_path / "notes_sess" "ion2.txt").write_text("fine\n")
  (tmp_path / "train.py").write_text("# fixed in iss" "ue 12\n")
  git("add", ".")
  assert sorted(history_words(tmp_path)) == ["notes_sess" "ion2.txt", "train.py:1:# fixed in iss" "ue 12"]


def test_command_line_doc_names_every_entry_point_and_no_other():
  documented = set(MODULE_COMMAND.findall((ROOT / COMMAND_LINE_DOC).read_text()))
  assert entry_points(ROOT) - documented == set(), "entry points missing from docs/command-line.md"
  assert documented - entry_points(ROOT) == set(), "docs/command-line.md names modules that are not entry points"


@pytest.mark.parametrize("path", present_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_commands_and_flags_exist(path):
  text = path.read_text()
  names = {name for name, _ in commands(text)}
  assert {name for name in names if name.endswith(".py") and not (ROOT / name).exists()} == set()
  assert {name for name in names if not name.endswith(".py")} - entry_points(ROOT) == set()
  assert unknown_flags(text, ROOT) == []


@pytest.mark.parametrize("path", present_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_metric_keys_are_written_by_the_code(path):
  assert unknown_metric_keys(path.read_text(), ROOT) == []


def test_quoted_config_fields_exist():
  fields = config_fields()
  assert {str(path.relative_to(ROOT)): unknown_config_fields(path.read_text(), fields) for path in present_docs()} == {
      str(path.relative_to(ROOT)): [] for path in present_docs()}


def test_entry_point_scan_finds_a_missing_and_an_unknown_module(tmp_path):
  (tmp_path / "mnet_jax" / "tool").mkdir(parents=True)
  (tmp_path / "sweeps").mkdir()
  (tmp_path / "mnet_jax" / "run.py").write_text('def main():\n  pass\n\n\nif __name__ == "__main__":\n  main()\n')
  (tmp_path / "mnet_jax" / "tool" / "__main__.py").write_text("print(1)\n")
  (tmp_path / "mnet_jax" / "library.py").write_text("def main():\n  pass\n")
  doc = "`python -m mnet_jax.run` and `python -m mnet_jax.gone`"
  assert entry_points(tmp_path) == {"mnet_jax.run", "mnet_jax.tool"}
  assert entry_points(tmp_path) - set(MODULE_COMMAND.findall(doc)) == {"mnet_jax.tool"}
  assert set(MODULE_COMMAND.findall(doc)) - entry_points(tmp_path) == {"mnet_jax.gone"}


def test_flag_check_finds_planted_flags():
  doc = ("```\npython -m mnet_jax.main --config c.py --workdir w \\\n    --config.seed=1 --bogus  # --comment\n```\n"
         "`python -m mnet_jax.evaluate --workdir w --seeds 3`, `python -m mnet_jax.bench --no-torch-compile`, "
         "`python benchmarks/kernel_ab.py --nope`, `--parallel 2`, `--never`, `--dry`\n")
  assert unknown_flags(doc, ROOT) == ["mnet_jax.main --bogus", "mnet_jax.evaluate --seeds",
                                      "benchmarks/kernel_ab.py --nope", "--never"]


def test_metric_key_check_finds_planted_keys():
  doc = "`test_top1`, `test_ema_top1`, `ema_top1`, `train_seconds`, `train_and_evaluate`, `ema_test_top1`, `test_top7`"
  assert unknown_metric_keys(doc, ROOT) == ["ema_test_top1", "test_top7"]


def test_config_field_check_finds_planted_fields():
  doc = ("`--config.optim.base_learning_rate=0.05`, `config.model.kernels`, `config.json`, `--config.FIELD=VALUE`, "
         "`config.model.kernel`, `--config.optim.lr=1`, mnet_jax/configs/fashion_mnist.py")
  assert unknown_config_fields(doc, config_fields()) == ["model.kernel", "optim.lr"]
