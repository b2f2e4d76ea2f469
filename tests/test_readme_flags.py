"""Every --flag that README.md and flags/*.cfg give is defined by its app.

Who a flag belongs to:
  - in a command (a code block line, or a code span that starts with a
    program: `akd-search ...`, `python benchmarks/x.py ...`,
    `bash .ci/install ...`): that program; flags of other programs (ray,
    pip, adb) are not checked;
  - in prose: the last akd-* app, benchmark script or .ci script named
    before it in the same paragraph, else the app of the section it is in
    (`_SECTION_APPS`); a prose flag with neither fails the test;
  - in flags/*.cfg: akd-search, unless a line '# app: NAME' names another.
"""

import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The app prose flags of a section belong to (sections not listed have
# none, or name the app in the paragraph).
_SECTION_APPS = {
    "Quick start (fresh Debian machine, Python 3.11)": "akd-search",
    "Searching": "akd-search",
    "The one-shot proxy": "akd-search",
    "Presets": "akd-search",
    "Your own images": "akd-search",
    "Running on a Ray cluster": "akd-search",
    "Does the best student depend on the teacher? akd-analyze":
        "akd-analyze",
    "Latency": "akd-latency",
    "Export": "akd-export",
    "Architectures as text": "akd-arch",
    "The search space": "akd-search",
    "AKD vs NAS+KD vs random search": "benchmarks/akd_vs_nas.py",
    "How many candidates does REINFORCE need?": "benchmarks/controller.py",
}
# Words before a command's program: `nice -n 10 python benchmarks/x.py`.
_WRAPPERS = {"bash", "sudo", "nice", "python", "python3", "exec", "env"}
_MENTION = re.compile(r"(?<![\w/.-])(akd-[a-z]+|benchmarks/\w+\.py|"
                      r"\.ci/install)\b")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*)")


def _program(tokens):
  """(the program a command's tokens run, the tokens after it); the
  program is None when the tokens are no command, 'external' for
  programs this repository does not define."""
  tokens = list(tokens)
  while tokens and (os.path.basename(tokens[0]) in _WRAPPERS or
                    tokens[0].startswith("-") or tokens[0].isdigit()):
    tokens.pop(0)
  if not tokens:
    return None, []
  head, rest = tokens[0], tokens[1:]
  name = os.path.basename(head)
  if name.startswith("akd-"):
    return name, rest
  if head.endswith(".py") and head.startswith("benchmarks/"):
    return head, rest
  if head.endswith(".ci/install"):
    return ".ci/install", rest
  if re.fullmatch(r"[\w./-]+", head) and not head.startswith("<"):
    return "external", rest
  return None, []


def _split(text):
  try:
    return shlex.split(text, comments=True)
  except ValueError:
    return text.split()


def _commands(text):
  """(program, flag names) of each shell command in `text`."""
  try:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
  except ValueError:
    tokens = text.split()
  segment = []
  for token in tokens + [";"]:
    if token not in ("&&", "||", ";", "|", "&"):
      segment.append(token)
      continue
    program, rest = _program(segment)
    segment = []
    if program is not None:
      yield program, [t[2:].split("=")[0] for t in rest if t.startswith("--")]


def _code_block_flags(lines):
  """(program, flag) of the commands of an indented code block."""
  text = "\n".join(lines).replace("\\\n", " ")
  for line in text.splitlines():
    for program, names in _commands(line):
      for name in names:
        yield program, name


def _paragraph_flags(text, section):
  """(program, flag) of a paragraph's commands and prose flags."""
  events = []  # (position, kind, value)
  commands = []
  for span in _CODE_SPAN.finditer(text):
    tokens = _split(span.group(1))
    if tokens and tokens[0].startswith("--"):
      for token in tokens:
        if token.startswith("--"):
          events.append((span.start(), "flag", token[2:].split("=")[0]))
      commands.append(span.span())
      continue
    if _program(_split(span.group(1)))[0] is None:
      continue  # Not a command: its flags, if any, are prose flags.
    commands.append(span.span())
    for program, names in _commands(span.group(1)):
      if program != "external":
        events.append((span.start(), "mention", program))
      for name in names:
        yield program, name
  for mention in _MENTION.finditer(text):
    events.append((mention.start(), "mention", mention.group(1)))
  for flag in _FLAG.finditer(text):
    if not any(a <= flag.start() < b for a, b in commands):
      events.append((flag.start(), "flag", flag.group(1)))
  current = _SECTION_APPS.get(section)
  for _, kind, value in sorted(events, key=lambda e: (e[0], e[1] == "flag")):
    if kind == "mention":
      current = value
    else:
      yield current, value


def readme_flags(path):
  """(program or None, flag, where) of every flag README.md gives."""
  with open(path) as f:
    lines = f.read().splitlines()
  section, paragraph, code = None, [], []
  found = []

  def flush():
    if paragraph:
      found.extend((p, n, section) for p, n in
                   _paragraph_flags(" ".join(paragraph), section))
      paragraph.clear()
    if code:
      found.extend((p, n, section) for p, n in _code_block_flags(code))
      code.clear()

  for line in lines:
    if line.startswith("#"):
      flush()
      section = line.lstrip("#").strip()
    elif not line.strip():
      flush()
    elif line.startswith("    ") and not paragraph:
      code.append(line)
    elif code and line.startswith(" "):
      code.append(line)
    else:
      paragraph.append(line.strip())
  flush()
  return found


def flagfile_flags(path):
  """(app, flag) of every flag of a flagfile."""
  with open(path) as f:
    lines = [line.strip() for line in f]
  app = "akd-search"
  for line in lines:
    match = re.fullmatch(r"#\s*app:\s*(\S+)", line)
    if match:
      app = match.group(1)
  return [(app, line[2:].split("=")[0]) for line in lines
          if line.startswith("--")]


_DEFINED = """import json, os, re, runpy, sys
from absl import app, flags
program = sys.argv[1]
if program.startswith("akd-"):
  with open("setup.py") as f:
    module = re.search(rf'"{program}=([\\w.]+):', f.read()).group(1)
  __import__(module)
else:
  sys.path.insert(0, os.path.dirname(program))
  runpy.run_path(program, run_name="readme_flags")
app.define_help_flags()
names = set(flags.FLAGS) | {"flagfile", "undefok"}
with open(program if program.endswith(".py") else os.devnull) as f:
  names |= set(re.findall(r'add_argument\\("--(\\w+)"', f.read()))
print(json.dumps(sorted(names)))
"""


def _defined_flags(programs):
  """{program: the flags it defines}, read from each in its own process."""
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
             CUDA_VISIBLE_DEVICES="")
  runs = {}
  for program in programs:
    if program == ".ci/install":
      with open(os.path.join(ROOT, program)) as f:
        runs[program] = set(re.findall(r'"--([\w-]+)"', f.read()))
    else:
      runs[program] = subprocess.Popen(
          [sys.executable, "-c", _DEFINED, program], cwd=ROOT, env=env,
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  defined = {}
  for program, run in runs.items():
    if isinstance(run, set):
      defined[program] = run
      continue
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, (program, stderr[-2000:])
    defined[program] = set(json.loads(stdout.splitlines()[-1]))
  return defined


def _is_defined(name, names):
  return name in names or (name.startswith("no") and name[2:] in names)


def test_every_flag_of_readme_and_flagfiles_is_defined_by_its_app():
  mentioned = [(p, n, f"README.md ({s})")
               for p, n, s in readme_flags(os.path.join(ROOT, "README.md"))]
  for path in sorted(glob.glob(os.path.join(ROOT, "flags", "*.cfg"))):
    mentioned += [(p, n, os.path.relpath(path, ROOT))
                  for p, n in flagfile_flags(path)]
  assert len(mentioned) > 100, mentioned
  unattributed = [(n, where) for p, n, where in mentioned if p is None]
  assert not unattributed, f"flags of no app: {unattributed}"
  checked = [(p, n, w) for p, n, w in mentioned if p != "external"]
  defined = _defined_flags(sorted({p for p, _, _ in checked}))
  missing = sorted({(p, n, w) for p, n, w in checked
                    if not _is_defined(n, defined[p])})
  assert not missing, f"flags their app does not define: {missing}"


def test_flags_are_attributed_to_the_app_of_their_command():
  text = ("With `akd-export --quantize=none` (unless `--noexport`); "
          "`--executor=ray` and `python benchmarks/x.py --seeds=1`.")
  assert list(_paragraph_flags(text, "Searching")) == [
      ("akd-export", "quantize"), ("benchmarks/x.py", "seeds"),
      ("akd-export", "noexport"), ("akd-export", "executor")]
  assert list(_paragraph_flags("`--executor=ray`", "Searching")) == [
      ("akd-search", "executor")]
  assert list(_paragraph_flags("`--executor=ray`", "Layout")) == [
      (None, "executor")]
  assert list(_code_block_flags([
      "    nice -n 10 python benchmarks/c.py --budget=3 \\",
      "        --jobs=2 && .venv/bin/ray start --head"])) == [
          ("benchmarks/c.py", "budget"), ("benchmarks/c.py", "jobs"),
          ("external", "head")]


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
