"""akd-arch: build an architecture and print its size.

  akd-arch --preset=mnasnet_a1 --image_size=224 --num_classes=1000 --json
  akd-arch --blocks=r1_k3_s11_e1_i32_o16,r2_k3_s22_e6_i16_o24 \
      --image_size=28 --channels=1 --num_classes=10

Prints the block strings, parameters and multiply-accumulates; with --json,
one JSON line with the keys blocks, params, trainable_params, macs,
input_shape and global_params.
"""

from absl import app
from absl import flags

from akd_tf.cli import common
from akd_tf.cli import entry

JSON = flags.DEFINE_bool("json", False, "Print one JSON line instead of a "
                         "table.")
SUMMARY = flags.DEFINE_bool("summary", False,
                            "Also print the Keras layer summary.")

GROUPS = (entry.module_group("akd-arch", globals()),
          entry.module_group("architecture", vars(common)))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  spec = common.arch_spec_from_flags()
  from akd_tf.space import builder  # pylint: disable=g-import-not-at-top
  from akd_tf.space import profile  # pylint: disable=g-import-not-at-top
  model = builder.build_from_spec(spec)
  size = profile.profile_model(model)
  if JSON.value:
    record = spec.get_config()
    record.update(params=size.params, trainable_params=size.trainable_params,
                  macs=size.macs)
    common.print_json_line(record)
    return
  if SUMMARY.value:
    model.summary()
  print(f"input shape      {tuple(spec.input_shape)}")
  for i, block in enumerate(spec.block_strings):
    print(f"block {i}          {block}")
  print(f"params           {size.params:,} ({size.params / 1e6:.2f}M, "
        f"{size.trainable_params:,} trainable)")
  print(f"MACs             {size.macs:,} ({size.macs / 1e6:.1f}M)")


def run():
  """Console-script entry point."""
  entry.run(main, "akd-arch", __doc__, GROUPS)


if __name__ == "__main__":
  run()
