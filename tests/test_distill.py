"""Distillation targets: a teacher's predictions file blended into the training labels."""

from __future__ import annotations

import numpy as np
import pytest

from boneage.evaluation.predictions import Predictions
from boneage.training.distill import Teacher


def _predictions_file(tmp_path, ids, ages, preds):
    path = tmp_path / "predictions.csv"
    Predictions(
        list(ids), np.asarray(ages, float), np.asarray(preds, float),
        np.ones(len(ids)), None,
    ).write_csv(path)  # fmt: skip
    return path


def test_blend_is_the_weighted_mean_and_keeps_unknown_cases(tmp_path):
    path = _predictions_file(tmp_path, ["a", "b"], [10.0, float("nan")], [20.0, 50.0])
    teacher = Teacher.read(path, 0.25)
    targets = teacher.blend(["a", "b", "c"], np.array([100.0, 40.0, 7.0], np.float32))
    # a: 0.75 * 100 + 0.25 * 20; b: 0.75 * 40 + 0.25 * 50; c: no estimate, keeps its label.
    np.testing.assert_allclose(targets, [80.0, 42.5, 7.0])
    assert teacher.coverage(["a", "b", "c"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"66\.7% of the 3 train cases"):
        teacher.check_covers(["a", "b", "c"], "train")


def test_tf_blend_equals_the_numpy_blend(tmp_path):
    tf = pytest.importorskip("tensorflow")
    path = _predictions_file(tmp_path, ["a", "b"], [1.0, 2.0], [20.0, 50.0])
    teacher = Teacher.read(path, 0.4)
    ids, age = ["a", "b", "zz"], np.array([100.0, 10.0, 3.0], np.float32)
    blend = teacher.tf_blend()
    got = [float(blend(tf.constant(i), tf.constant(a))) for i, a in zip(ids, age, strict=True)]
    np.testing.assert_allclose(got, teacher.blend(ids, age), rtol=1e-6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,months\na,3\n", "not a predictions file"),
        ("id,male,age_months,predicted_months\na,1,3,abc\n", r":2: predicted_months 'abc'"),
        ("id,male,age_months,predicted_months\na,1,3,nan\n", "is not a number"),
        ("id,male,age_months,predicted_months\n", "no predictions"),
    ],
)
def test_bad_teacher_files_refused(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        Teacher.read(path, 0.5)


def test_weight_outside_0_1_refused(tmp_path):
    path = _predictions_file(tmp_path, ["a"], [1.0], [2.0])
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="teacher-weight"):
            Teacher.read(path, bad)


def test_both_data_paths_yield_blended_training_targets(tmp_path):
    """tf.data and the TensorFlow-free ShardDataset give the same blended targets."""
    pytest.importorskip("tensorflow")
    from boneage.shards import make_dataset, read_split
    from boneage.shards.pydataset import ShardDataset
    from boneage.training.demo import make_synthetic

    data = tmp_path / "data"
    make_synthetic(data, {"train": 40}, 32, seed=3)
    _images, _male, age, ids = read_split(data, "train")
    teacher = Teacher.read(_predictions_file(tmp_path, ids, age, np.full(len(ids), 100.0)), 0.5)
    expected = dict(zip(ids, 0.5 * age + 50.0, strict=True))

    ds = make_dataset(data, "train", 8, 32, training=False, teacher=teacher)
    got_tf = np.concatenate([y.numpy() for _x, y in ds])
    plain = make_dataset(data, "train", 8, 32, training=False)
    labels = np.concatenate([y.numpy() for _x, y in plain])
    np.testing.assert_allclose(got_tf, 0.5 * labels + 50.0, rtol=1e-5)

    py = ShardDataset(data, "train", 8, 32, training=False, teacher=teacher)
    got_py = np.concatenate([py[i][1] for i in range(len(py))])
    np.testing.assert_allclose(got_py, [expected[i] for i in py.ids], rtol=1e-5)
