"""The search presets: the flagfiles of flags/, shipped with the package.

The repository's `flags/*.cfg` are installed as the package data
`akd_tf.presets` (setup.py maps that package to flags/), so an installed
akd_tf has them too. `akd-search --preset=NAME` is `--flagfile=<that
file>` at the same place on the command line: flags after it override the
preset's, as with any flagfile.

Public names: names, path, expand_preset_flags.
"""

import importlib.util
import os
from typing import List

__all__ = ["expand_preset_flags", "names", "path"]

_SUFFIX = ".cfg"
# A checkout that is not installed: flags/ beside the akd_tf folder.
_CHECKOUT_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "flags")


def _directory() -> str:
  """The folder of the preset files: the installed package data, else the
  checkout's flags/."""
  spec = importlib.util.find_spec("akd_tf.presets")
  if spec is None or not spec.submodule_search_locations:
    return _CHECKOUT_DIR
  return list(spec.submodule_search_locations)[0]


def names() -> List[str]:
  """The presets' names (their file names without .cfg), sorted."""
  directory = _directory()
  if not os.path.isdir(directory):
    return []
  return sorted(f[:-len(_SUFFIX)] for f in os.listdir(directory)
                if f.endswith(_SUFFIX))


def path(name: str) -> str:
  """The flagfile of preset `name`.

  Raises:
    ValueError: no preset has that name; the message lists the presets.
  """
  if name not in names():
    raise ValueError(f"no preset '{name}'; the presets are {names()}")
  return os.path.join(_directory(), name + _SUFFIX)


def expand_preset_flags(argv: List[str]) -> List[str]:
  """`argv` with every '--preset=NAME' (or '--preset NAME') of a known
  preset replaced by '--flagfile=<its path>', in place; other arguments and
  unknown names are kept, so absl reports those."""
  expanded = []
  i = 0
  while i < len(argv):
    arg = argv[i]
    name = None
    if arg == "--":
      expanded += argv[i:]
      break
    if arg.startswith("--preset="):
      name = arg[len("--preset="):]
    elif arg == "--preset" and i + 1 < len(argv):
      name = argv[i + 1]
    if name in names():
      expanded.append(f"--flagfile={path(name)}")
      i += 1 if arg.startswith("--preset=") else 2
    else:
      expanded.append(arg)
      i += 1
  return expanded
