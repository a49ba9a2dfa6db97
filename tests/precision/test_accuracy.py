"""Accuracy measures (measure/accuracy.py) and precision floors (measure/parity.py) against hand-computed cases."""

import math

import numpy as np
import pytest

from embedperf.measure import accuracy, parity


def test_rank_average_gives_ties_the_mean_of_their_ranks():
    # sorted: 1.0 (rank 1), 2.0 x3 (ranks 2,3,4 -> 3), 5.0 (rank 5)
    assert accuracy.rank_average(np.array([2.0, 1.0, 2.0, 5.0, 2.0])).tolist() == [3.0, 1.0, 3.0, 5.0, 3.0]
    assert accuracy.rank_average(np.array([7, 7])).tolist() == [1.5, 1.5]
    assert accuracy.rank_average(np.array([3.0, 1.0, 2.0])).tolist() == [3.0, 1.0, 2.0]


def test_spearman_hand_cases():
    assert accuracy.spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == pytest.approx(1.0)
    assert accuracy.spearman(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == pytest.approx(-1.0)
    # no ties: rho = 1 - 6 Σd² / (n(n²-1)); ranks b = [1,3,2,4,5], d² sum = 2 -> 1 - 12/120 = 0.9
    assert accuracy.spearman(np.arange(5), np.array([0.1, 0.3, 0.2, 0.4, 0.5])) == pytest.approx(0.9)
    # ties: ranks a = [1, 2.5, 2.5, 4], b = [1, 2, 3, 4]; Pearson of those = 0.9486832980505138
    assert accuracy.spearman(np.array([1, 2, 2, 3]), np.array([1, 2, 3, 4])) == pytest.approx(3 / math.sqrt(10))


def test_spearman_agrees_with_scipy_on_random_data_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 20, 300), rng.normal(size=300).round(1)
    assert accuracy.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_recall_at_k_hand_case():
    # four points on the unit circle at 0°, 10°, 90°, 100°; row 0's nearest is 1, row 2's nearest is 3
    angles = np.radians([0, 10, 90, 100])
    ref = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert accuracy.top_k(accuracy.unit_rows(ref) @ accuracy.unit_rows(ref).T, 1).ravel().tolist() == [1, 0, 3, 2]
    assert accuracy.recall_at_k(ref, ref, k=1) == 1.0
    # move point 1 to 80°: row 0's nearest is still 1 (80°), row 1's nearest becomes 2 (90°), row 2's becomes 1,
    # row 3's stays 2: hits 1 + 0 + 0 + 1 = 2 of 4
    moved = ref.copy()
    moved[1] = [np.cos(np.radians(80)), np.sin(np.radians(80))]
    assert accuracy.recall_at_k(moved, ref, k=1) == 0.5
    # k=2: ref top-2 of row 0 = {1,2}, moved {1,2} -> 2; row 1: ref {0,2}, moved {2,3} -> 1;
    # row 2: ref {3,1}, moved {1,3} -> 2; row 3: ref {2,1}, moved {2,1} -> 2; 7 of 8
    assert accuracy.recall_at_k(moved, ref, k=2) == pytest.approx(7 / 8)


def test_accuracy_cost_real_text_and_random_weights():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(40, 16))
    noisy = ref + 0.01 * rng.normal(size=ref.shape)
    real = accuracy.accuracy_cost(noisy, ref, real_text=True)
    cos = accuracy.cosine(noisy, ref)
    assert real["min_cosine"] == pytest.approx(cos.min()) and real["mean_cosine"] == pytest.approx(cos.mean())
    assert 0.9 < real["recall_at_10"] <= 1.0 and 0.99 < real["spearman"] <= 1.0 and real["pairs"] == 40 * 39 // 2
    assert accuracy.accuracy_cost(ref, ref, real_text=True)["recall_at_10"] == 1.0
    twin = accuracy.accuracy_cost(noisy, ref, real_text=False)
    assert "recall_at_10" not in twin and "spearman" not in twin
    assert twin["note"] == "weights random: accuracy cost not meaningful (cosine to the fp32 reference only)"
    assert "error" in accuracy.accuracy_cost(ref[:3], ref, real_text=True)
    bad = noisy.copy()
    bad[0, 0] = np.nan
    assert accuracy.accuracy_cost(bad, ref, real_text=True)["error"] == "output holds NaN or Inf"


def test_floors_judge_only_the_measures_present():
    assert parity.below_floor("fp32", {"min_cosine": 0.99995}) is None
    assert "min cosine 0.999800 < 0.9999" in parity.below_floor("fp32", {"min_cosine": 0.9998})
    ok_int8 = {"min_cosine": 0.95, "mean_cosine": 0.98, "recall_at_10": 0.85, "spearman": 0.97}
    assert parity.below_floor("int8", ok_int8) is None
    why = parity.below_floor("int8", {**ok_int8, "recall_at_10": 0.5})
    assert why == "int8 accuracy below its floor: recall at 10 0.500000 < 0.7"
    assert parity.below_floor("bf16", {"min_cosine": 0.9999, "mean_cosine": 0.99995}) is None  # twin: cosine only
    assert parity.below_floor("bf16", {"error": "output holds NaN or Inf"}) == "output holds NaN or Inf"
    assert parity.below_floor("bf16", {"min_cosine": float("nan")}) is not None
    # every reduced precision is looser than fp32, and the zero-shot limits grow the same way
    for p in ("fp16", "bf16", "int8"):
        assert parity.FLOORS[p]["min_cosine"] < parity.FP32_MIN_COSINE
        assert parity.zero_shot_limit(p) > parity.ZERO_SHOT_LIMIT


def test_corpus_accuracy_reorders_and_judges():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(30, 8))
    order = rng.permutation(30)
    fed_ref = ref[order]
    block = accuracy.corpus_accuracy(fed_ref, fed_ref, order, real_text=True, precision="int8")
    assert block["recall_at_10"] == 1.0 and block["below_floor"] is None and block["floor"] == parity.FLOORS["int8"]
    # a candidate whose rows are shuffled against the reference's is no longer the same embedding
    bad = accuracy.corpus_accuracy(fed_ref[::-1].copy(), fed_ref, order, real_text=True, precision="bf16")
    assert bad["below_floor"].startswith("bf16 accuracy below its floor: min cosine")


def test_rows_both_embed_to_zero_leave_the_cosine_figures_and_are_counted():
    """A text tokenized to nothing but padding embeds to zero in the reference: agreement there is no cosine."""
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    same = accuracy.accuracy_cost(ref.copy(), ref, real_text=False)
    assert same["min_cosine"] == 1.0 and same["zero_rows"] == 1
    wrong = ref.copy()
    wrong[2] = [0.5, 0.5]  # something where the reference has nothing: that row keeps its cosine of 0
    got = accuracy.accuracy_cost(wrong, ref, real_text=False)
    assert got["min_cosine"] == 0.0 and "zero_rows" not in got
