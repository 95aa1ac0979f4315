"""The docs: every relative link in README.md and docs/*.md resolves, the README stays short, and the product holds
no words about how its work was organised (history lives in docs/perf-log.md only)."""

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
