"""One-shot proxy: a weight-sharing supernet of the space, trained once.

Imports `akd_tf.space` and `akd_tf.distill`, never latency, nas, deploy or
analysis; `akd_tf.nas` scores candidates with it (`--proxy=oneshot`).

  packed          Packed (one op's weights in one flat variable),
                  WeightSlice
  path_ops        a path's slices, BatchNormalization modes and SE
  super_layer     SuperLayer: every choice of one MnasNet layer
  supernet        Supernet: the whole space, the path an input tensor
  student         inherit_student: a path's builder student with the
                  supernet's weights
  path_optimizer  make_path_optimizer: updates only nonzero gradients
  sampling        the paths (uniform, sandwich, warm-up) and batches of a
                  step
  trainer         SupernetTrainConfig, SupernetTrainer (KD or CE;
                  checkpoints)
  cache           get_trained_supernet: trained once, cached, resumable
  scorer          OneShotScorer: BN recalibrated per path, mini-val
                  accuracy; also of block strings
"""
