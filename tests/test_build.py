"""BUILD names every file, and each target's deps cover its imports.

BUILD is Starlark, whose syntax is a subset of Python's: it is parsed with
`ast` (only calls, list comprehensions and assignments at its top level) and
evaluated with its rules, `glob` and `requirement` recording what they are
given, so the test needs neither Bazel (which could not be run offline
here) nor TensorFlow. It checks that
  - every akd_tf module, test file, test helper and benchmark is in the srcs
    of a target, every file BUILD names exists, target names are unique;
  - every test file is the main of a py_test and runs its tests under
    pytest when executed as a program, as `bazel test` executes it;
  - what each target's sources import is reachable through its deps: an
    akd_tf module through the target that holds it, a test helper or
    benchmark module through a target whose srcs name it, a third-party
    package through `requirement(<its pip name>)`. An import inside a
    `try` that catches ImportError is optional (Ray, an extra) and needs
    no dep; so is one in a module's `__getattr__` (PEP 562: akd_tf's
    `search` and `load_history`, imported on first use, which their users
    depend on through :api; :akd_tf cannot, :api depends on it).
"""

import ast
import dataclasses
import glob
import os
import subprocess
import sys
from typing import Dict, Iterator, List, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "BUILD")
# The pip name of each third-party package the sources import.
PIP_NAMES = {
    "absl": "absl-py", "ai_edge_litert": "ai-edge-litert",
    "hypothesis": "hypothesis", "keras": "keras", "matplotlib": "matplotlib",
    "numpy": "numpy", "pandas": "pandas", "psutil": "psutil",
    "pytest": "pytest", "ray": "ray", "tensorboard": "tensorboard",
    "scipy": "scipy", "sklearn": "scikit-learn", "tensorflow": "tensorflow",
    "tensorflow_datasets": "tensorflow-datasets",
    "tensorflow_model_optimization": "tensorflow-model-optimization",
    "tf_keras": "tf-keras",
}
# What `bazel test` runs: the test file as a program.
MAIN_BLOCK = 'if __name__ == "__main__":\n  sys.exit(pytest.main([__file__]))'


@dataclasses.dataclass(frozen=True)
class Target:
  """One rule of BUILD: kind ('py_library', 'py_binary', 'py_test'), name,
  and its srcs, deps, data and main as given."""

  kind: str
  name: str
  srcs: Tuple[str, ...]
  deps: Tuple[str, ...]
  data: Tuple[str, ...]
  main: str


def _starlark_glob(patterns, exclude=()):
  found = set()
  for pattern in patterns:
    found.update(os.path.relpath(path, ROOT) for path in glob.glob(
        os.path.join(ROOT, pattern), recursive=True))
  for pattern in exclude:
    found -= set(_starlark_glob([pattern]))
  return sorted(found)


def read_build(source: str) -> Tuple[Dict[str, Target], List[str]]:
  """Evaluates BUILD's text.

  Returns:
    (its targets by name, the names defined more than once).

  Raises:
    ValueError: a top-level statement other than those BUILD files have
      (calls, list comprehensions of calls, assignments).
  """
  tree = ast.parse(source, BUILD)
  for node in tree.body:
    if not (isinstance(node, ast.Assign) or (
        isinstance(node, ast.Expr) and
        isinstance(node.value, (ast.Call, ast.ListComp)))):
      raise ValueError(f"BUILD line {node.lineno}: not a call, a list "
                       "comprehension of calls or an assignment")
  targets, duplicates = {}, []

  def rule(kind):
    def record(name, srcs=(), deps=(), data=(), main="", **unused):
      del unused  # size, visibility: not what this test checks.
      if name in targets:
        duplicates.append(name)
      targets[name] = Target(kind, name, tuple(srcs), tuple(deps),
                             tuple(data), main)
    return record

  namespace = {
      "__builtins__": {"len": len, "list": list, "dict": dict,
                       "range": range, "sorted": sorted},
      "load": lambda *labels, **symbols: None,
      "package": lambda **attributes: None,
      "glob": _starlark_glob,
      "requirement": lambda name: f"requirement({name})",
      "py_library": rule("py_library"), "py_binary": rule("py_binary"),
      "py_test": rule("py_test"),
  }
  exec(compile(tree, BUILD, "exec"), namespace)  # pylint: disable=exec-used
  return targets, duplicates


@pytest.fixture(scope="module")
def targets() -> Dict[str, Target]:
  with open(BUILD) as f:
    return read_build(f.read())[0]


def _project_files() -> List[str]:
  """The files that need a target: akd_tf modules, test files and helpers,
  benchmarks."""
  patterns = ("akd_tf/**/*.py", "tests/test_*.py", "tests/*_testing.py",
              "tests/conftest.py", "benchmarks/*.py")
  return sorted({path for pattern in patterns
                 for path in _starlark_glob([pattern])})


def files_without_target(all_targets: Dict[str, Target]) -> List[str]:
  named = {src for target in all_targets.values() for src in target.srcs}
  return [path for path in _project_files() if path not in named]


def _imports(path: str) -> Iterator[Tuple[int, str, bool]]:
  """(line, imported module, optional) of every import of a source file,
  function-level ones included; `from X import a` yields X.a. Optional: in
  a `try` that catches ImportError, or in a module-level `__getattr__`."""
  with open(os.path.join(ROOT, path)) as f:
    tree = ast.parse(f.read(), path)
  optional = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Try) and any(
        isinstance(handler.type, ast.Name) and
        handler.type.id in ("ImportError", "ModuleNotFoundError")
        for handler in node.handlers):
      optional.update(id(inner) for statement in node.body
                      for inner in ast.walk(statement))
  for node in tree.body:
    if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
      optional.update(id(inner) for inner in ast.walk(node))
  package = os.path.dirname(path).replace(os.sep, ".")
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name, id(node) in optional
    elif isinstance(node, ast.ImportFrom):
      module = node.module or ""
      if node.level:
        base = package.split(".")[:len(package.split(".")) - node.level + 1]
        module = ".".join(base + ([module] if module else []))
      for alias in node.names:
        yield node.lineno, f"{module}.{alias.name}", id(node) in optional


def _what_provides(importer: str, module: str) -> str:
  """The file of an akd_tf, test helper or benchmark module, or the
  requirement of a third-party one, or '' for the standard library.

  Raises:
    KeyError: a third-party package missing from PIP_NAMES.
  """
  parts = module.split(".")
  if parts[0] == "akd_tf":
    for end in range(len(parts), 0, -1):
      stem = os.path.join(*parts[:end])
      for candidate in (stem + ".py", os.path.join(stem, "__init__.py")):
        if os.path.exists(os.path.join(ROOT, candidate)):
          return candidate
  beside = os.path.join(os.path.dirname(importer), parts[0] + ".py")
  if os.path.exists(os.path.join(ROOT, beside)):
    return beside
  if parts[0] in sys.stdlib_module_names:
    return ""
  return f"requirement({PIP_NAMES[parts[0]]})"


def _reachable(target: Target, all_targets: Dict[str, Target]) -> set:
  """The files and requirements of a target and of its deps, transitively."""
  seen, found, todo = set(), set(), [target]
  while todo:
    current = todo.pop()
    if current.name in seen:
      continue
    seen.add(current.name)
    found.update(current.srcs)
    for dep in current.deps:
      if dep.startswith(":"):
        todo.append(all_targets[dep[1:]])
      else:
        found.add(dep)
  return found


def uncovered_imports(all_targets: Dict[str, Target]) -> List[str]:
  """'target: file:line imports module (needs X)' for every import of a
  target's sources that its deps do not provide."""
  problems = []
  for target in all_targets.values():
    reachable = _reachable(target, all_targets)
    for src in target.srcs:
      for line, module, optional in _imports(src):
        try:
          needed = _what_provides(src, module)
        except KeyError:
          problems.append(f"{src}:{line} imports {module}: add its pip name "
                          "to PIP_NAMES in tests/test_build.py")
          continue
        if needed and not optional and needed not in reachable:
          problems.append(f"{target.name}: {src}:{line} imports {module} "
                          f"(needs {needed})")
  return sorted(set(problems))


def test_build_is_starlark_rules_with_unique_names():
  with open(BUILD) as f:
    duplicates = read_build(f.read())[1]
  assert not duplicates, f"targets defined twice: {duplicates}"


def test_every_module_test_and_benchmark_has_a_target(targets):
  missing = files_without_target(targets)
  assert not missing, f"add to BUILD: {missing}"


def test_a_module_left_out_of_build_is_found(targets):
  nas = targets["nas"]
  without_reward = dict(targets, nas=dataclasses.replace(nas, srcs=tuple(
      src for src in nas.srcs if src != "akd_tf/nas/reward.py")))
  assert files_without_target(without_reward) == ["akd_tf/nas/reward.py"]


def test_every_file_build_names_exists(targets):
  named = {path for target in targets.values()
           for path in target.srcs + target.data + (target.main,)
           if path and not path.startswith(":")}
  absent = sorted(path for path in named
                  if not os.path.exists(os.path.join(ROOT, path)))
  assert not absent, f"BUILD names files that do not exist: {absent}"


def test_every_test_file_is_the_main_of_a_py_test(targets):
  mains = {target.main for target in targets.values()
           if target.kind == "py_test" and target.main in target.srcs}
  tests = [path for path in _project_files()
           if os.path.basename(path).startswith("test_")]
  assert sorted(set(tests) - mains) == []


def test_every_test_file_runs_pytest_when_executed():
  without = []
  for path in _starlark_glob(["tests/test_*.py"]):
    with open(os.path.join(ROOT, path)) as f:
      if not f.read().rstrip().endswith(MAIN_BLOCK):
        without.append(path)
  assert not without, f"end them with\n{MAIN_BLOCK}\n: {without}"


@pytest.mark.parametrize("body, returncode", [
    ("def test_passes():\n  assert True\n", 0),
    ("def test_fails():\n  assert False\n", 1),
])
def test_a_test_file_executed_as_a_program_fails_when_its_tests_fail(
    tmp_path, body, returncode):
  path = tmp_path / "test_example.py"
  path.write_text(f"import sys\n\nimport pytest\n\n\n{body}\n\n{MAIN_BLOCK}\n")
  proc = subprocess.run([sys.executable, str(path)], capture_output=True,
                        text=True, timeout=120, check=False, cwd=tmp_path)
  assert proc.returncode == returncode, proc.stdout[-2000:]
  assert "1 passed" in proc.stdout or "1 failed" in proc.stdout


def test_each_targets_deps_cover_its_imports(targets):
  problems = uncovered_imports(targets)
  assert not problems, "\n".join(problems)


def test_a_missing_dep_is_found(targets):
  space = targets["space"]
  without_numpy = dict(targets, space=dataclasses.replace(space, deps=tuple(
      dep for dep in space.deps if dep != "requirement(numpy)")))
  assert any(problem.startswith("space: akd_tf/space/") and
             problem.endswith("(needs requirement(numpy))")
             for problem in uncovered_imports(without_numpy))


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
