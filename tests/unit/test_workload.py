"""Workloads: seeded, identical for every runtime, padded on the right, capped by the model."""

import numpy as np
import pytest

from embedperf.models.registry import get_model
from embedperf.workload.text import ShapeError, check_shape, ensure, make_tokens


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "embeddinggemma-300m", "Qwen3-Embedding-0.6B", "bge-m3"])
def test_tokens_are_wrapped_padded_and_seeded(name):
    spec = get_model(name)
    t = spec.token_scheme("twin")
    w = make_tokens(t, 8, 64, seed=0)
    ids, mask, lengths = w["input_ids"], w["attention_mask"], w["lengths"]
    assert ids.shape == mask.shape == (8, 64) and ids.dtype == np.int64
    assert lengths[0] == 64 and np.all((lengths >= 32) & (lengths <= 64))
    assert np.array_equal(mask.sum(1), lengths)
    for row, n in enumerate(lengths):
        assert list(ids[row, :len(t.prefix)]) == list(t.prefix)
        assert list(ids[row, n - len(t.suffix):n]) == list(t.suffix)
        body = ids[row, len(t.prefix):n - len(t.suffix)]
        assert body.min() >= t.regular[0] and body.max() < t.regular[1]
        assert np.all(ids[row, n:] == t.pad) and np.all(mask[row, n:] == 0)
    again = make_tokens(t, 8, 64, seed=0)
    assert np.array_equal(again["input_ids"], ids)
    assert not np.array_equal(make_tokens(t, 8, 64, seed=1)["input_ids"], ids)


def test_shapes_past_the_position_table_are_refused_and_past_max_seq_length_warned():
    spec = get_model("all-MiniLM-L6-v2")
    with pytest.raises(ShapeError, match="longer than"):
        check_shape(spec, "package", 513)
    with pytest.warns(UserWarning, match="max_seq_length 256"):
        check_shape(spec, "package", 300)


def test_workload_files_are_written_once(tmp_path):
    spec = get_model("all-MiniLM-L6-v2")
    w = ensure(spec, "package", 2, 16, tmp_path)
    mtime = w.path.stat().st_mtime_ns
    assert ensure(spec, "package", 2, 16, tmp_path).path.stat().st_mtime_ns == mtime
