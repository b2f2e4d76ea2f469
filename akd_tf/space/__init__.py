"""The search space: architectures as text, the MnasNet space, the builder.

Imports only `akd_tf.config_checks`; everything else in akd_tf builds on it.

  arch          BlockArgs, GlobalParams, ArchSpec; MnasNet block strings
                (decode_block_string, encode_blocks, ...)
  search_space  SearchSpace: controller actions <-> blocks; DECISIONS
  builder       build_student, build_from_spec (Keras 3, or tf_keras via
                keras_api=), PRESETS, round_filters, BUILDER_VERSION
  profile       count_params, count_macs, profile_model -> ModelProfile
"""
