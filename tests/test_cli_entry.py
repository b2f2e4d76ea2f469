"""Tests of what every console script does (akd_tf/cli/entry.py and
akd_tf/cli/__init__.py): --helpshort lists the app's own flags by group,
TensorFlow's C++ start-up lines are quiet unless asked for, usage errors are
one line."""

import json
import os
import re
import subprocess
import sys

import pytest

from akd_tf import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What pip writes as a console script (`pip install` of setup.py's
# entry_points): the app module is imported by a wrapper, not run as main.
_WRAPPER = """import re
import sys
from {module} import {function}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({function}())
"""
# Lines TensorFlow prints while it is imported on this CPU.
_TF_START_LINES = ("oneDNN custom operations", "cpu_feature_guard",
                   "Could not find cuda drivers", "absl::InitializeLog")
# Flags of an app that --helpshort leaves out on purpose.
_HIDDEN = {"akd-train": {"num_classes", "channels"}}


def _console_scripts():
  with open(os.path.join(ROOT, "setup.py")) as f:
    setup = f.read()
  return re.findall(r'"(akd-[\w-]+)=([\w.]+):(\w+)"', setup)


def _script(tmp_path, name, module, function):
  path = tmp_path / name
  path.write_text(_WRAPPER.format(module=module, function=function))
  return str(path)


def _env(**changes):
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH")}
  env.update(PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="", **changes)
  return env


# Prints, before the app runs, the flags that modules of akd_tf.cli define
# (absl's own record of who defined what).
_OWN_FLAGS_THEN_RUN = """import json, runpy, sys
from absl import flags
import {module}
own = sorted(f.name for m, fs in flags.FLAGS.flags_by_module_dict().items()
             if m.startswith("akd_tf.cli") for f in fs)
print(json.dumps(own), file=sys.stderr, flush=True)
sys.argv[0] = {name!r}
runpy.run_path({script!r}, run_name="__main__")
"""


def _helpshort(tmp_path, name, module, function):
  script = _script(tmp_path, name, module, function)
  code = _OWN_FLAGS_THEN_RUN.format(module=module, name=name, script=script)
  return subprocess.Popen(
      [sys.executable, "-c", code, "--helpshort"], env=_env(),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _groups(help_text):
  """{heading: [flag names]} of the flags after the docstring, as absl
  renders a module's flags."""
  groups, heading = {}, None
  _, _, flags_part = help_text.partition("\nflags of ")
  for line in flags_part.partition("\n\n")[2].splitlines():
    if re.fullmatch(r"\S.*:", line):
      heading = line[:-1]
      groups[heading] = []
    elif heading is not None:
      match = re.match(r"  (?:-\w,)?--(?:\[no\])?(\w+):", line)
      if match:
        groups[heading].append(match.group(1))
  return groups


@pytest.fixture(name="helpshort", scope="module")
def fixture_helpshort(tmp_path_factory):
  """{console script: (its --helpshort, the flags its akd_tf.cli modules
  define)}, every script run at once."""
  tmp_path = tmp_path_factory.mktemp("scripts")
  runs = {name: _helpshort(tmp_path, name, module, function)
          for name, module, function in _console_scripts()}
  outputs = {}
  for name, process in runs.items():
    stdout, stderr = process.communicate(timeout=600)
    outputs[name] = stdout, set(json.loads(stderr.splitlines()[0]))
  return outputs


def test_every_console_script_lists_exactly_its_own_flags_by_group(
    helpshort):
  assert len(helpshort) >= 6, list(helpshort)
  for name, (stdout, own) in helpshort.items():
    groups = _groups(stdout)
    listed = [flag for flags in groups.values() for flag in flags]
    assert listed, f"{name} --helpshort lists no flags:\n{stdout}"
    assert len(listed) == len(set(listed)), f"{name} lists a flag twice"
    assert set(listed) <= own, (name, set(listed) - own)
    assert own - set(listed) == _HIDDEN.get(name, set()), (
        name, own - set(listed))
    assert next(iter(groups)) == name, (name, list(groups))


def test_akd_search_help_groups_the_search_flags(helpshort):
  stdout, _ = helpshort["akd-search"]
  groups = _groups(stdout)
  assert stdout.startswith("akd-search: search the MnasNet space")
  assert "model_dir" in groups["akd-search"]
  assert "preset" in groups["akd-search"]
  assert "num_candidates" in groups["akd-search controller"]
  assert "target_ms" in groups["akd-search reward"]
  assert "dataset" in groups["akd-search data"]
  assert "latency_runs" in groups["akd-search latency"]


def _search_help(tmp_path, *args, **env):
  script = _script(tmp_path, "akd-search", "akd_tf.cli.search", "run")
  return subprocess.run([sys.executable, script, "--helpshort", *args],
                        env=_env(**env), capture_output=True, text=True,
                        timeout=600, check=False, cwd=ROOT)


def test_tensorflow_start_lines_are_quiet_unless_asked_for(tmp_path):
  quiet = _search_help(tmp_path)
  assert "akd-search controller:" in quiet.stdout
  assert not [m for m in _TF_START_LINES if m in quiet.stderr], quiet.stderr
  for verbose in (_search_help(tmp_path, "-v=1"),
                  _search_help(tmp_path, TF_CPP_MIN_LOG_LEVEL="0")):
    assert [m for m in _TF_START_LINES if m in verbose.stderr], (
        verbose.stderr)


@pytest.mark.parametrize("argv, requested", [
    ([], False),
    (["--verbosity=1"], True),
    (["--verbosity", "2"], True),
    (["-v=1"], True),
    (["-v", "debug"], True),
    (["--v=1"], True),
    (["-v=0"], False),
    (["--verbosity=info"], False),
    (["--", "-v=1"], False),
    (["--vv=1", "--model_dir=v"], False),
])
def test_verbosity_is_read_from_the_command_line(argv, requested):
  assert cli.verbosity_requested(argv) == requested


def test_a_tf_log_level_the_user_set_is_kept():
  environ, meta_path = {"TF_CPP_MIN_LOG_LEVEL": "0"}, []
  cli.quiet_tensorflow_start([], environ, meta_path)
  assert environ == {"TF_CPP_MIN_LOG_LEVEL": "0"} and not meta_path
  environ = {}
  cli.quiet_tensorflow_start(["-v=1"], environ, meta_path)
  assert environ == {} and not meta_path
  cli.quiet_tensorflow_start([], environ, meta_path)
  assert environ == {"TF_CPP_MIN_LOG_LEVEL": "3",
                     "AKD_TF_QUIET_TENSORFLOW": "1"}
  assert len(meta_path) == 1
  # A worker process inherits the level and quiets its import too.
  meta_path = []
  cli.quiet_tensorflow_start([], dict(environ), meta_path)
  assert len(meta_path) == 1


def test_only_tensorflows_start_up_notices_are_dropped():
  printed = (
      "WARNING: All log messages before absl::InitializeLog() is called are "
      "written to STDERR\n"
      "I0000 00:00:1796044711.499531    3655 port.cc:153] oneDNN custom "
      "operations are on.\n"
      "W1130 12:00:01.000000    3655 cudart_stub.cc:31] Could not find cuda "
      "drivers on your machine, GPU will not be used.\n"
      "To enable the following instructions: AVX2 FMA, in other operations, "
      "rebuild TensorFlow with the appropriate compiler flags.\n"
      "E0000 00:00:1796044711.5    3655 cuda_dnn.cc:8] Unable to register "
      "cuDNN factory\n"
      "F0000 00:00:1796044711.6    3655 main.cc:1] fatal\n"
      "a Python warning\n")
  assert cli.passed_on(printed) == (
      "F0000 00:00:1796044711.6    3655 main.cc:1] fatal\n"
      "a Python warning\n")


def test_usage_error_is_one_line_naming_the_flag(tmp_path):
  script = _script(tmp_path, "akd-search", "akd_tf.cli.search", "run")
  proc = subprocess.run(
      [sys.executable, script, f"--model_dir={tmp_path / 'run'}",
       "--num_candidates=0"], env=_env(), capture_output=True, text=True,
      timeout=600, check=False, cwd=ROOT)
  assert proc.returncode == 1
  errors = [line for line in proc.stderr.splitlines() if "error" in line]
  assert errors == ["akd-search: error: --num_candidates=0: SearchConfig: "
                    "num_candidates=0 must be >= 1"], proc.stderr
  assert "akd-search controller:" not in proc.stderr


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
