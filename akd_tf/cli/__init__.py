"""absl command-line apps of akd_tf.

Flags are defined and parsed only here and turned into plain config objects
before anything in the library is called.

Importing this package quiets TensorFlow's C++ start-up lines (oneDNN,
CUDA drivers, CPU instructions), which every app would otherwise print
before its first line: a console script imports its app module, and with it
TensorFlow, before absl has parsed a flag, so this is the last moment.
TensorFlow 2.21 prints them through absl's C++ logging before it reads
TF_CPP_MIN_LOG_LEVEL, so the first `import tensorflow` runs with the
process's stderr (file descriptor 2) captured, and what it printed is passed
on without its log lines (an import that fails still raises ImportError);
TF_CPP_MIN_LOG_LEVEL=3 then hides the later ones, such as 'failed call to
cuInit' on a machine without a GPU (level 2 would still show that one).
Nothing changes when the user set TF_CPP_MIN_LOG_LEVEL or asked for
verbosity on the command line (-v / --verbosity of 1 or debug). The
environment variable AKD_TF_QUIET_TENSORFLOW=1 tells the app's worker
processes (which import the app's main module again) that the level is
akd_tf's, so they quiet their import too.
"""

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# absl's names of --verbosity levels.
_VERBOSITY_NAMES = {"debug": 1, "info": 0, "warning": -1, "error": -2,
                    "fatal": -3}
# 3 hides TensorFlow's C++ INFO, WARNING and ERROR lines (FATAL shows).
_QUIET_TF_CPP_MIN_LOG_LEVEL = "3"
# Set beside it: the level is akd_tf's, not the user's.
_QUIET_MARKER = "AKD_TF_QUIET_TENSORFLOW"
# What `import tensorflow` prints that is not passed on: absl's notice, its
# INFO, WARNING and ERROR lines ('I0000 00:00:...', 'E1130 ...', such as
# 'Unable to register cuDNN factory' on GPU machines) and the second line
# of the CPU instructions notice.
_START_UP_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\)|"
    r"[IWE]\d{4} \d\d:\d\d:\d\d|To enable the following instructions:")


def _level(value: str):
  """absl's --verbosity value as an int, None when it is not one."""
  value = value.strip().lower()
  if value in _VERBOSITY_NAMES:
    return _VERBOSITY_NAMES[value]
  try:
    return int(value)
  except ValueError:
    return None


def verbosity_requested(argv) -> bool:
  """Whether `argv` (command-line arguments) sets --verbosity (-v) >= 1.

  Reads '-v=1', '-v 1', '--v=1', '--verbosity=1' and '--verbosity 1' (also
  'debug'), up to a '--' that ends the flags; flagfiles are not read.
  """
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg == "--":
      break
    name, has_value, value = arg.lstrip("-").partition("=")
    if not arg.startswith("-") or name not in ("v", "verbosity"):
      continue
    if not has_value:
      value = argv[i + 1] if i + 1 < len(argv) else ""
    level = _level(value)
    if level is not None and level >= 1:
      return True
  return False


def passed_on(printed: str) -> str:
  """The lines of what `import tensorflow` printed that are not its
  start-up notices."""
  return "".join(line for line in printed.splitlines(keepends=True)
                 if not _START_UP_LINE.match(line))


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
  """Runs the first `import tensorflow` with stderr captured (see the
  module docstring)."""

  def find_spec(self, name, path=None, target=None):
    del path, target  # Unused: tensorflow is a top-level package.
    if name != "tensorflow":
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.loader is not None:
      exec_module = spec.loader.exec_module
      spec.loader.exec_module = lambda module: _quietly(exec_module, module)
    return spec


def _quietly(exec_module, module) -> None:
  sys.stderr.flush()
  with tempfile.TemporaryFile() as capture:
    saved = os.dup(2)
    os.dup2(capture.fileno(), 2)
    try:
      exec_module(module)
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      sys.stderr.write(passed_on(capture.read().decode(errors="replace")))
      sys.stderr.flush()


def quiet_tensorflow_start(argv, environ, meta_path) -> None:
  """Unless the user set TF_CPP_MIN_LOG_LEVEL in `environ` or asked for
  verbosity in `argv`: sets it (and the marker that akd_tf did), and adds
  the quiet first import of tensorflow to `meta_path` (which never acts
  when tensorflow is imported already)."""
  if environ.get(_QUIET_MARKER) != "1":
    if "TF_CPP_MIN_LOG_LEVEL" in environ or verbosity_requested(argv):
      return
    environ["TF_CPP_MIN_LOG_LEVEL"] = _QUIET_TF_CPP_MIN_LOG_LEVEL
    environ[_QUIET_MARKER] = "1"
  meta_path.insert(0, _QuietTensorFlowImport())


quiet_tensorflow_start(sys.argv[1:], os.environ, sys.meta_path)
