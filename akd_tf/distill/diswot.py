"""A training-free distillation score: teacher-student sample relations.

In the spirit of DisWOT (Dong et al., "DisWOT: Student Architecture Search
for Distillation WithOut Training", CVPR 2023): a student whose untrained
features already relate the images of a batch to each other as the
teacher's features do is expected to distill well. For features F of a
batch (one row per image: the feature map before global pooling, flattened)
the sample-relation matrix is the batch Gram matrix with L2-normalized rows,

  G = normalize_rows(F F^T)                       (B x B)

as in similarity-preserving KD (Tung & Mori, ICCV 2019), and the score of
a student s against a teacher t is

  similarity = 1 - ||G_t - G_s||_F^2 / (2 B)

which is the mean cosine similarity of corresponding rows: 1 for identical
relations, unchanged when the features are scaled, and a decreasing function
of DisWOT's relation distance ||G_t - G_s||_F, so it ranks students exactly
as that distance does (larger is better). One forward pass of one batch: a
second or less per student on a CPU. (DisWOT adds a semantic term from
class-activation maps; only the relation term is here.)

The teacher runs in inference mode; the untrained student runs with batch
statistics (training mode), as a freshly built network does in the
training-free scores of the literature: in inference mode its BatchNorm
layers would use their initial statistics, and a 28x28 search-space student
measured here then ended its feature map at about 1e-16, where the relations
are rounding noise. The student's BatchNorm moving statistics are restored
afterwards, so scoring changes nothing in it.

Public names: features_before_pooling, relation_matrix, relation_similarity,
RelationScorer.
"""

import keras
import numpy as np

__all__ = ["RelationScorer", "features_before_pooling", "relation_matrix",
           "relation_similarity"]

_POOLING = (keras.layers.GlobalAveragePooling2D,
            keras.layers.GlobalMaxPooling2D)


def relation_matrix(features) -> np.ndarray:
  """Returns the row-normalized batch Gram matrix of `features`.

  Args:
    features: (B, ...) features of B images; each is flattened.

  Returns:
    float64 (B, B): G = F F^T with every row scaled to unit L2 norm (a row
    of an all-zero feature vector stays zero).

  Raises:
    ValueError: fewer than 2 images, or non-finite features.
  """
  flat = np.asarray(features, dtype=np.float64)
  if flat.ndim < 2 or flat.shape[0] < 2:
    raise ValueError(f"features of shape {flat.shape}: need (batch >= 2, "
                     "...) to relate images to each other")
  flat = flat.reshape(flat.shape[0], -1)
  if not np.all(np.isfinite(flat)):
    raise ValueError("features hold NaN or infinite values")
  gram = flat @ flat.T
  norms = np.linalg.norm(gram, axis=1, keepdims=True)
  return gram / np.where(norms > 0, norms, 1.0)


def relation_similarity(teacher_relations: np.ndarray,
                        student_relations: np.ndarray) -> float:
  """1 - ||G_t - G_s||_F^2 / (2 B) of two batches' relation matrices.

  Args:
    teacher_relations: `relation_matrix` of the teacher's features (B, B).
    student_relations: `relation_matrix` of the student's features of the
      same B images in the same order (any feature size).

  Returns:
    A float in [-1, 1]; 1 when the relations are identical.

  Raises:
    ValueError: the matrices are not square or describe different batches.
  """
  g_t = np.asarray(teacher_relations, dtype=np.float64)
  g_s = np.asarray(student_relations, dtype=np.float64)
  for name, g in (("teacher", g_t), ("student", g_s)):
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
      raise ValueError(f"{name} relations of shape {g.shape}: expected a "
                       "square (B, B) relation_matrix")
  if g_t.shape != g_s.shape:
    raise ValueError(f"teacher and student relations describe batches of "
                     f"{g_t.shape[0]} and {g_s.shape[0]} images; give both "
                     "the same images")
  return float(1.0 - np.sum((g_t - g_s) ** 2) / (2 * g_t.shape[0]))


def features_before_pooling(model: keras.Model) -> keras.Model:
  """A model from `model`'s input to the feature map its last global pooling
  reads (the one before the classifier; squeeze-excitation units pool too).

  Args:
    model: A functional Keras model with a global pooling layer (every
      `akd_tf.space.builder` student and built-in teacher has one).

  Returns:
    A `keras.Model` sharing `model`'s weights, outputting (B, H, W, C).

  Raises:
    ValueError: the model has no global pooling layer.
  """
  pooling = [layer for layer in model.layers if isinstance(layer, _POOLING)]
  if not pooling:
    raise ValueError(f"model '{model.name}' has no global pooling layer; the "
                     "relation score reads the feature map before the "
                     "classifier's global pooling")
  return keras.Model(model.input, pooling[-1].input,
                     name=f"{model.name}_features")


class RelationScorer:
  """Scores students against one teacher on one fixed batch of images.

  The teacher's relation matrix is computed once, here.

  Args:
    teacher: The trained teacher (with a global pooling layer).
    images: (B, H, W, C) real training images, B >= 2.

  Raises:
    ValueError: see `features_before_pooling` and `relation_matrix`.
  """

  def __init__(self, teacher: keras.Model, images: np.ndarray):
    self.images = np.asarray(images, dtype=np.float32)
    self.teacher_relations = relation_matrix(
        features_before_pooling(teacher)(self.images, training=False))

  def score(self, student: keras.Model) -> float:
    """The untrained student's `relation_similarity` to the teacher.

    The student runs in training mode (batch statistics) on the batch; its
    non-trainable weights (BatchNorm moving statistics) are put back after.
    """
    saved = [keras.ops.convert_to_numpy(w) for w in
             student.non_trainable_weights]
    try:
      features = features_before_pooling(student)(self.images, training=True)
    finally:
      for weight, value in zip(student.non_trainable_weights, saved):
        weight.assign(value)
    return relation_similarity(self.teacher_relations,
                               relation_matrix(features))
