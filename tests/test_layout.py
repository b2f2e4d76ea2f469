"""The package's shape: every module sits in a layer, imports point down.

Layers, lowest first (README "Layout"):

  config_checks, jsonl, memory <- space <- distill, latency <- oneshot
  <- nas <- deploy, analysis <- cli <- api <- akd_tf/__init__.py

A module may import its own subpackage and any lower layer; distill and
latency do not import each other, nor do deploy and analysis. The
package's __init__ is its public face, above everything: it re-exports
`api.search` and `nas.history.load_history`, imported on first use (so
that `import akd_tf.space.arch` does not import the API); every module
may `import akd_tf` itself. Imports are
read with `ast` from the source, function-level imports included, so the
test needs no TensorFlow.
"""

import ast
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "akd_tf")
# Layer of every subpackage and top-level module of akd_tf.
LAYERS = {
    "config_checks": 0, "jsonl": 0, "memory": 0,
    "space": 1,
    "distill": 2, "latency": 2,
    "oneshot": 3,
    "nas": 4,
    "deploy": 5, "analysis": 5,
    "cli": 6,
    "api": 7,
    "akd_tf": 8,
}


def unit_of(module: str) -> str:
  """'akd_tf.nas.loop' -> 'nas'; 'akd_tf.config_checks' ->
  'config_checks'; 'akd_tf' -> 'akd_tf'."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else parts[0]


def package_modules():
  """(dotted name, path) of every .py file under akd_tf/."""
  for folder, _, files in os.walk(PACKAGE):
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        dotted = os.path.relpath(path, ROOT)[:-len(".py")].replace(os.sep, ".")
        yield dotted.removesuffix(".__init__"), path


def akd_imports(source: str, module: str):
  """(line, imported akd_tf module) of every import in `source`."""
  package = module if module.count(".") < 2 else module.rsplit(".", 1)[0]
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split(".")[0] == "akd_tf":
          yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom):
      target = node.module or ""
      if node.level:  # Relative: resolve against this module's package.
        base = package.split(".")[:len(package.split(".")) - node.level + 1]
        target = ".".join(base + ([target] if target else []))
      if target.split(".")[0] != "akd_tf":
        continue
      for alias in node.names:
        yield node.lineno, f"{target}.{alias.name}"


def violations(module: str, source: str):
  """Messages for the imports of `module` that point up or sideways."""
  own = unit_of(module)
  found = []
  for line, imported in akd_imports(source, module):
    other = unit_of(imported)
    if other not in LAYERS:
      found.append(f"{module}:{line} imports {imported}, which is in no "
                   "layer")
    elif other != own and LAYERS[other] >= LAYERS[own] and other != "akd_tf":
      found.append(f"{module}:{line} imports {imported}: {own} (layer "
                   f"{LAYERS[own]}) may import only lower layers, and "
                   f"{other} is layer {LAYERS[other]}")
  return found


def test_every_module_is_in_a_layer():
  unplaced = sorted(module for module, _ in package_modules()
                    if unit_of(module) not in LAYERS)
  assert not unplaced, (
      f"{unplaced} are in no layer: put them in a subpackage of their "
      "concern, or give them a layer in LAYERS (and README's Layout)")


def test_no_module_imports_a_higher_or_sibling_layer():
  found = []
  for module, path in package_modules():
    with open(path) as f:
      found += violations(module, f.read())
  assert not found, "\n".join(found)


@pytest.mark.parametrize("module, source", [
    ("akd_tf.nas.loop", "from akd_tf.deploy import finalize\n"),
    ("akd_tf.space.builder",
     "def f():\n  from akd_tf.latency import timing\n"),
    ("akd_tf.distill.training", "import akd_tf.latency.timing\n"),
    ("akd_tf.deploy.export", "from akd_tf import analysis\n"),
    ("akd_tf.config_checks", "from akd_tf.space import arch\n"),
    ("akd_tf.cli.search", "from akd_tf import api\n"),
    ("akd_tf.deploy.pipeline", "def f():\n  from akd_tf import api\n"),
    ("akd_tf.nas.evaluate", "from ..cli import flag_configs\n"),
    ("akd_tf.oneshot.scorer", "from akd_tf.nas import evaluate\n"),
    ("akd_tf.distill.data", "from akd_tf.oneshot import supernet\n"),
])
def test_an_upward_or_sideways_import_is_caught(module, source):
  assert violations(module, source)


@pytest.mark.parametrize("module, source", [
    ("akd_tf.nas.loop", "from akd_tf.nas import evaluate\n"),
    ("akd_tf.deploy.pipeline", "from akd_tf.nas import loop\n"),
    ("akd_tf.cli.search", "from akd_tf.deploy import pipeline\n"),
    ("akd_tf.latency.timing", "from akd_tf import config_checks\n"),
    ("akd_tf.nas.ray_pool", "from . import evaluate\n"),
    ("akd_tf.nas.evaluate", "from akd_tf.oneshot import scorer\n"),
    ("akd_tf.oneshot.trainer", "from akd_tf.distill import distiller\n"),
    ("akd_tf.api", "from akd_tf.cli import flag_configs\n"),
    ("akd_tf", "def f():\n  from akd_tf import api\n"),
    ("akd_tf.space.arch", "import akd_tf\n"),
])
def test_a_downward_import_is_allowed(module, source):
  assert not violations(module, source)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
