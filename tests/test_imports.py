"""The import graph of mnet_jax, sweeps and experiments, read from their import statements (those inside functions
included), has no cycle: two modules that import each other are one idea cut in the wrong place."""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("mnet_jax", "sweeps", "experiments")


def module_files(root, packages):
  """{dotted module name: path} for every .py file under `root`/<package>."""
  modules = {}
  for package in packages:
    for directory, _, files in os.walk(os.path.join(root, package)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(directory, name)
          parts = os.path.relpath(path, root)[:-len(".py")].split(os.sep)
          modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return modules


def imported_modules(path, module, is_package, known):
  """The modules of `known` that the file at `path` imports anywhere in its body."""
  package = module if is_package else module.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: from . import x, from ..a import b
        anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
      for alias in node.names:
        submodule = f"{base}.{alias.name}"
        found.add(submodule if submodule in known else base)  # `from p import m` imports module p.m when it is one
  return {name for name in found if name in known and name != module}


def import_graph(root, packages):
  """{module: the modules it imports}, over the modules of `packages` under `root`."""
  files = module_files(root, packages)
  return {module: imported_modules(path, module, path.endswith("__init__.py"), files)
          for module, path in files.items()}


def components(graph):
  """The strongly connected components of more than one module, as sets (Tarjan): each holds a cycle."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def connect(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in sorted(graph[node]):
      if target not in index:
        connect(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = set()
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.add(member)
        if member == node:
          break
      if len(component) > 1:
        found.append(component)

  for node in sorted(graph):
    if node not in index:
      connect(node)
  return found


def cycle_through(graph, component):
  """The shortest cycle inside `component` from its first module back to it (breadth first)."""
  start = min(component)
  paths = {start: [start]}
  frontier = [start]
  while frontier:
    following = []
    for node in frontier:
      for target in sorted(graph[node] & component):
        if target == start:
          return paths[node] + [start]
        if target not in paths:
          paths[target] = paths[node] + [target]
          following.append(target)
    frontier = following
  raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def describe(graph, component):
  """"a -> b -> a", then the component's other modules when there are more."""
  cycle = cycle_through(graph, component)
  others = sorted(component - set(cycle))
  return " -> ".join(cycle) + (f" (the same component: {', '.join(others)})" if others else "")


def test_import_graph_has_no_cycle():
  graph = import_graph(REPO, PACKAGES)
  assert {"mnet_jax.train", "sweeps.grid", "experiments.demo"} <= set(graph)
  assert "mnet_jax.config_file" in graph["sweeps.grid"]
  found = components(graph)
  assert not found, "import cycles: " + "; ".join(describe(graph, component) for component in found)


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
  package = tmp_path / "pkg"
  (package / "sub").mkdir(parents=True)
  (package / "__init__.py").write_text("")
  (package / "sub" / "__init__.py").write_text("")
  (package / "a.py").write_text("from pkg.sub import b\n")
  (package / "sub" / "b.py").write_text("import os\n\n\ndef late():\n  from .. import c\n  return c\n")
  (package / "c.py").write_text("import json\n\n\ndef later():\n  import pkg.a\n")
  (package / "d.py").write_text("from pkg import a, c\n")  # imports into the cycle, is not part of it
  graph = import_graph(str(tmp_path), ("pkg",))
  assert graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.a", "pkg.c"}
  assert components(graph) == [{"pkg.a", "pkg.sub.b", "pkg.c"}]
  assert describe(graph, components(graph)[0]) == "pkg.a -> pkg.sub.b -> pkg.c -> pkg.a"
  (package / "c.py").write_text("import json\n")
  assert components(import_graph(str(tmp_path), ("pkg",))) == []
