"""Plots of the teacher-dependence analysis.

  plot_choice_distributions(d, path)  per decision a panel of 100%-stacked
                                      bars: the share of every choice among
                                      each group's top candidates, per block

`d` is what `teacher_dependence.choice_distributions` returns.

Drawn on an Agg canvas of its own (`akd_tf.nas.report.agg_figure`):
matplotlib's global backend is left as the user set it.

Public names: plot_choice_distributions.
"""

from matplotlib import patches

from akd_tf.nas import report

__all__ = ["plot_choice_distributions"]

_PANELS = (
    ("conv_op", "operation (expansion ratio)"),
    ("kernel", "kernel size"),
    ("se_ratio", "squeeze-and-excitation ratio"),
    ("skip", "skip connection"),
    ("filters", "width: output filters x skeleton's"),
    ("layers", "depth: layers vs skeleton's"),
)
_OP_NAMES = {"conv": "conv (e1)", "dwconv": "dwconv (e1)",
             "mbconv3": "mbconv e3", "mbconv6": "mbconv e6"}
_HATCHES = ("", "//", "..", "xx", "\\\\", "oo")


def _legend_label(name, label, skeleton_block) -> str:
  """Choice labels shared by every block, so one color means one choice."""
  if name == "conv_op":
    return _OP_NAMES.get(label, label)
  if name == "filters":
    return f"x{int(label) / skeleton_block['output_filters']:.3g}"
  if name == "layers":
    return f"{int(label) - skeleton_block['num_repeat']:+d} layer(s)"
  if name == "kernel":
    return f"{label}x{label}"
  if name == "se_ratio":
    return "no SE" if label == "0" else f"SE {label}"
  return label


def plot_choice_distributions(distributions: dict, path: str,
                              title: str = "") -> None:
  """Writes a PNG: per decision a panel of 100%-stacked bars.

  Every block has one bar per group (side by side, told apart by hatching);
  a bar's segments are the shares of the choices among that group's top
  candidates.

  Args:
    distributions: The dict `choice_distributions` returns.
    path: Where the PNG goes.
    title: Figure title; default: groups and candidate counts.
  """
  groups = list(distributions["groups"])
  skeleton = distributions["skeleton"]
  num_blocks = len(skeleton)
  width = 0.8 / len(groups)
  figure = report.agg_figure((13, 11))
  axes_grid = figure.subplots(3, 2)
  for axes, (name, panel_title) in zip(axes_grid.flat, _PANELS):
    legend = {}
    for b in range(num_blocks):
      for g, group in enumerate(groups):
        shares = distributions["groups"][group]["blocks"][b][name]
        bottom = 0.0
        x = b - 0.4 + width * (g + 0.5)
        for position, (label, share) in enumerate(shares.items()):
          if name == "layers":  # Blocks of one layer have no -1 choice.
            position = int(label) - skeleton[b]["num_repeat"] + 1
          color = f"C{position}"
          legend[_legend_label(name, label, skeleton[b])] = color
          if share > 0:
            axes.bar(x, share, width * 0.92, bottom=bottom, color=color,
                     hatch=_HATCHES[g % len(_HATCHES)], edgecolor="white",
                     linewidth=0.5)
          bottom += share
    axes.set_title(panel_title)
    axes.set_xticks(range(num_blocks))
    axes.set_xticklabels([f"block {b}" for b in range(num_blocks)])
    axes.set_ylim(0, 1)
    axes.set_ylabel("share of top candidates")
    handles = [patches.Patch(color=c, label=t)
               for t, c in sorted(legend.items(), key=lambda item: item[1])]
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                fontsize="small", frameon=False)
  group_handles = []
  for g, group in enumerate(groups):
    count = distributions["groups"][group]["num_candidates"]
    group_handles.append(patches.Patch(
        facecolor="lightgray", edgecolor="black",
        hatch=_HATCHES[g % len(_HATCHES)],
        label=f"bar {g + 1}: {group} (n={count})"))
  figure.legend(handles=group_handles, loc="upper center",
                ncol=len(groups), frameon=False, fontsize="medium",
                bbox_to_anchor=(0.5, 0.975))
  figure.suptitle(title or "choices of the top "
                  f"{distributions['top_k']} candidates per search, by teacher",
                  y=0.995)
  figure.tight_layout(rect=(0, 0, 1, 0.95))
  figure.savefig(path, dpi=110)
