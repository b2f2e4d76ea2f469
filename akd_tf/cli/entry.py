"""What every akd_tf console script does around absl's `app.run`.

  --help / --helpshort  the app's docstring and its own flags, by group
                        (absl lists the key flags of the main module, and a
                        console script's main module is pip's wrapper, which
                        defines none); --helpfull still lists every flag.
  usage errors          one line naming the flag, then a pointer to
                        --helpshort, instead of the docstring again.

An app lists its flags in groups:

  GROUPS = (entry.module_group("akd-arch", globals()),
            entry.module_group("architecture", vars(common)))
  def run():
    entry.run(main, "akd-arch", __doc__, GROUPS)

Public names: FlagGroup, defined_group, module_group, help_text, run.
"""

import dataclasses
import sys
from typing import Callable, Iterable, List, Mapping, Optional, Sequence

from absl import app
from absl import flags

__all__ = ["FlagGroup", "defined_group", "help_text", "module_group", "run"]

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class FlagGroup:
  """Flags shown together under a title by --helpshort.

  Attributes:
    title: The group's heading.
    names: The flags' names.
  """

  title: str
  names: tuple


def defined_group(title: str, define: Callable[[], None]) -> FlagGroup:
  """Calls `define` and returns the flags it defined as group `title`."""
  before = set(FLAGS)
  define()
  return FlagGroup(title, tuple(name for name in FLAGS
                                if name not in before and
                                FLAGS[name].name == name))


def module_group(title: str, namespace: Mapping[str, object],
                 exclude: Iterable[str] = ()) -> FlagGroup:
  """The flags of a module's FlagHolder constants (pass its `globals()` or
  `vars(module)`), but those named in `exclude`, as group `title`."""
  return FlagGroup(title, tuple(value.name for value in namespace.values()
                                if isinstance(value, flags.FlagHolder) and
                                value.name not in exclude))


def help_text(app_name: str, doc: str, groups: Iterable[FlagGroup]) -> str:
  """The app's docstring followed by its flags, group by group, as absl
  renders a module's flags; '%' doubled, as absl's usage() formats it."""
  lines = [doc.rstrip(), "", flags.text_wrap(
      f"flags of {app_name} (--helpfull lists every flag, TensorFlow's and "
      "absl's too; -v=1 shows TensorFlow's C++ log lines):")]
  for group in groups:
    label = f"{app_name} {group.title}" if group.title != app_name else (
        app_name)
    for name in group.names:
      FLAGS.register_key_flag_for_module(label, FLAGS[name])
    lines.append(FLAGS.module_help(label))
  return ("\n".join(lines) + "\n").replace("%", "%%")


def run(main: Callable[[List[str]], Optional[int]], app_name: str, doc: str,
        groups: Sequence[FlagGroup], argv: Optional[List[str]] = None
        ) -> None:
  """Runs `main` under absl with the app's help and one-line usage errors.

  Args:
    main: The app's main(argv).
    app_name: The console script's name ('akd-search').
    doc: The app's module docstring.
    groups: Its flags, in the order --helpshort lists them.
    argv: The command line (default sys.argv).
  """
  # absl's usage() prints the main module's docstring and key flags. Give
  # it the app's docstring with the grouped flags, and no key flags of its
  # own (run with `python -m`, the app module is the main module and would
  # list its flags a second time).
  sys.modules["__main__"].__doc__ = help_text(app_name, doc, groups)
  FLAGS.key_flags_by_module_dict().pop(sys.argv[0], None)

  def main_with_usage_errors(args):
    try:
      return main(args)
    except app.UsageError as error:
      print(f"{app_name}: error: {error}\nTry --helpshort for {app_name}'s "
            "flags.", file=sys.stderr)
      return error.exitcode

  app.run(main_with_usage_errors, argv=argv)
