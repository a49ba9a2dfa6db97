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
