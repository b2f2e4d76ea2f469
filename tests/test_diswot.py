"""Tests of akd_tf.distill.diswot on real Fashion-MNIST images and real
models."""

import sys

import keras
import numpy as np
import pytest

from akd_tf.distill import data as data_lib
from akd_tf.distill import diswot
from akd_tf.distill import teacher as teacher_lib
from akd_tf.space import arch
from akd_tf.space import builder
from akd_tf.space import search_space


@pytest.fixture(scope="module")
def images():
  data = data_lib.load_data(data_lib.DataConfig(
      "fashion_mnist", train_size=32, minival_size=32, test_size=32))
  return data.train.images


@pytest.fixture(scope="module")
def teacher():
  keras.utils.set_random_seed(0)
  return teacher_lib.build_teacher("resnet_wide", (28, 28, 1), 10)


@pytest.fixture(scope="module")
def student():
  space = search_space.SearchSpace()
  keras.utils.set_random_seed(0)
  return builder.build_student(
      space.decode(space.sample(0)),
      arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                        head_size=64), (28, 28, 1))


def _features(model, images):
  return np.asarray(diswot.features_before_pooling(model)(images,
                                                          training=False))


def test_features_before_pooling_is_the_map_the_classifier_pools(
    student, images):
  features = _features(student, images)
  pooled = student.get_layer("avg_pool")(features)
  assert features.ndim == 4 and features.shape[0] == len(images)
  assert features.shape[-1] == 64  # The head's filters.
  np.testing.assert_allclose(pooled, np.mean(features, axis=(1, 2)),
                             atol=1e-6)


def test_features_before_pooling_rejects_a_model_without_global_pooling():
  inputs = keras.Input((28, 28, 1))
  model = keras.Model(inputs, keras.layers.Flatten()(inputs), name="flat")
  with pytest.raises(ValueError, match="'flat' has no global pooling"):
    diswot.features_before_pooling(model)


def test_relation_matrix_is_batch_by_batch_with_unit_rows(teacher, images):
  relations = diswot.relation_matrix(_features(teacher, images))
  assert relations.shape == (len(images), len(images))
  np.testing.assert_allclose(np.linalg.norm(relations, axis=1), 1.0,
                             atol=1e-12)


def test_identical_features_score_one(teacher, images):
  relations = diswot.relation_matrix(_features(teacher, images))
  assert diswot.relation_similarity(relations, relations) == pytest.approx(
      1.0, abs=1e-12)


def test_score_is_invariant_to_scaling_the_features(teacher, student, images):
  g_t = diswot.relation_matrix(_features(teacher, images))
  features = _features(student, images)
  plain = diswot.relation_similarity(g_t, diswot.relation_matrix(features))
  scaled = diswot.relation_similarity(
      g_t, diswot.relation_matrix(7.5 * features))
  assert scaled == pytest.approx(plain, abs=1e-8)  # float32 rounding.
  assert plain < 1.0


def test_score_drops_when_the_images_relate_differently(teacher, images):
  features = _features(teacher, images)
  g_t = diswot.relation_matrix(features)
  reordered = diswot.relation_matrix(features[::-1])  # Other pairings.
  assert diswot.relation_similarity(g_t, reordered) < 0.999


def test_score_is_the_mean_cosine_of_corresponding_rows(teacher, student,
                                                        images):
  g_t = diswot.relation_matrix(_features(teacher, images))
  g_s = diswot.relation_matrix(_features(student, images))
  cosines = np.sum(g_t * g_s, axis=1)
  assert diswot.relation_similarity(g_t, g_s) == pytest.approx(
      cosines.mean(), abs=1e-12)


def test_relation_similarity_rejects_batches_of_other_sizes(teacher, images):
  features = _features(teacher, images)
  with pytest.raises(ValueError, match="batches of 32 and 16 images"):
    diswot.relation_similarity(diswot.relation_matrix(features),
                               diswot.relation_matrix(features[:16]))


def test_relation_matrix_rejects_a_single_image(teacher, images):
  with pytest.raises(ValueError, match="batch >= 2"):
    diswot.relation_matrix(_features(teacher, images[:1]))


def test_scorer_scores_an_untrained_student_between_zero_and_one(
    teacher, student, images):
  score = diswot.RelationScorer(teacher, images).score(student)
  assert 0.0 < score < 1.0


def test_scorer_runs_the_student_on_batch_statistics(teacher, student,
                                                      images):
  # In inference mode this untrained student's features are about 1e-16
  # (BatchNorm uses its initial statistics): the score must not read them.
  features = diswot.features_before_pooling(student)(images, training=True)
  expected = diswot.relation_similarity(
      diswot.relation_matrix(_features(teacher, images)),
      diswot.relation_matrix(features))
  assert diswot.RelationScorer(teacher, images).score(student) == (
      pytest.approx(expected, abs=1e-9))


def test_scoring_changes_nothing_in_the_student(teacher, student, images):
  before = [np.array(w) for w in student.weights]
  scorer = diswot.RelationScorer(teacher, images)
  first = scorer.score(student)
  assert scorer.score(student) == first
  for weight, value in zip(student.weights, before):
    np.testing.assert_array_equal(np.array(weight), value)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
