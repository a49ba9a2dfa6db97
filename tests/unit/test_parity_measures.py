"""Parity measures against hand-made embeddings."""

import numpy as np
import pytest

from embedperf.measure.parity import compare, spread


def test_identical_embeddings_have_cosine_one():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    p = compare(ref.copy(), ref)
    assert p["min_cosine"] == pytest.approx(1.0)
    assert p["max_abs_diff"] == 0.0
    assert p["nn_agreement"] == 1.0


def test_cosine_and_difference_of_a_rotated_row():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    out = np.array([[np.sqrt(0.5), np.sqrt(0.5)], [0.0, 1.0]], dtype=np.float32)
    p = compare(out, ref)
    assert p["min_cosine"] == pytest.approx(np.sqrt(0.5), rel=1e-6)
    assert p["mean_cosine"] == pytest.approx((np.sqrt(0.5) + 1) / 2, rel=1e-6)
    assert p["max_abs_diff"] == pytest.approx(np.sqrt(0.5), rel=1e-6)  # |0.707 - 0| in row 0


def test_nan_output_is_an_error_not_a_cosine():
    ref = np.ones((2, 3), dtype=np.float32)
    out = ref.copy()
    out[1, 2] = np.nan
    assert "error" in compare(out, ref)


def test_shape_mismatch_is_an_error():
    assert "error" in compare(np.ones((2, 3)), np.ones((2, 4)))


def test_spread_of_orthogonal_and_identical_rows():
    assert spread(np.eye(3)) == pytest.approx(0.0)
    assert spread(np.ones((3, 4))) == pytest.approx(1.0)
    assert spread(np.ones((1, 4))) is None


def test_zero_shot_probabilities_by_hand():
    from embedperf.measure.parity import zero_shot_probabilities

    text = np.array([[1.0, 0.0], [0.0, 1.0]])
    img = np.array([[2.0, 0.0]])  # normalised to [1, 0]: cosine 1 with caption 0, 0 with caption 1
    logits, probs = zero_shot_probabilities(text, img, 10.0, None, "softmax")
    assert np.allclose(logits, [[10.0, 0.0]])
    assert np.allclose(probs, [[1 / (1 + np.exp(-10)), np.exp(-10) / (1 + np.exp(-10))]])
    logits, probs = zero_shot_probabilities(text, img, 10.0, -5.0, "sigmoid")
    assert np.allclose(logits, [[5.0, -5.0]])
    assert np.allclose(probs, [[1 / (1 + np.exp(-5)), 1 / (1 + np.exp(5))]])


def test_zero_shot_check_sees_a_swapped_caption():
    from embedperf.measure.parity import ZERO_SHOT_LIMIT, zero_shot

    rng = np.random.default_rng(0)
    text, img = rng.normal(size=(4, 8)), rng.normal(size=(4, 8))
    same = zero_shot(text, img, text.copy(), img.copy(), 100.0, None, "softmax")
    assert same["max_abs_prob_diff"] == 0.0 and same["top1_agreement"] == 1.0
    swapped = zero_shot(text[[1, 0, 2, 3]], img, text, img, 100.0, None, "softmax")
    assert swapped["max_abs_prob_diff"] > ZERO_SHOT_LIMIT
