"""The throughput corpus: seeded lengths, batches in feed order, padding stats, the file format."""

import numpy as np
import pytest
from safetensors.numpy import load_file

from embedperf.models.registry import TokenScheme, get_model
from embedperf.workload.corpus import lengths, make_corpus, write_corpus

BERT = TokenScheme(prefix=(101,), suffix=(102,), pad=0, regular=(999, 30522))
QWEN = TokenScheme(prefix=(), suffix=(1000,), pad=1000, regular=(0, 1000))


def test_lengths_are_deterministic_for_a_seed():
    assert np.array_equal(lengths(seed=3), lengths(seed=3))
    assert not np.array_equal(lengths(seed=3), lengths(seed=4))
    assert lengths().dtype == np.int64 and lengths().shape == (1024,)


def test_median_of_many_draws_is_near_the_asked_median():
    draws = lengths(n=100_000)
    assert abs(float(np.median(draws)) - 64) <= 2


def test_lengths_are_clipped():
    draws = lengths(n=20_000, sigma=2.0, low=8, high=512)
    assert draws.min() == 8 and draws.max() == 512
    tight = lengths(n=1000, low=30, high=40)
    assert tight.min() >= 30 and tight.max() <= 40


def corpus(tokens=BERT, n=300, batch=16, sort=False, seed=0):
    return make_corpus(tokens, lengths(n=n, seed=seed), batch, sort=sort, seed=seed)


def test_corpus_is_deterministic():
    a, sa = corpus()
    b, sb = corpus()
    assert sa == sb and a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c, _ = corpus(seed=1)
    assert not np.array_equal(a["input_ids.0"], c["input_ids.0"])


@pytest.mark.parametrize("sort", [False, True])
@pytest.mark.parametrize("tokens", [BERT, QWEN])
def test_rows_carry_their_item_length_and_special_tokens(sort, tokens):
    sizes = lengths(n=300)
    tensors, stats = make_corpus(tokens, sizes, 16, sort=sort, seed=0)
    order = tensors["order"]
    assert order.dtype == np.int64 and sorted(order.tolist()) == list(range(300))  # a permutation
    shapes = tensors["batches"]
    assert shapes.dtype == np.int64 and shapes.shape == (stats["batches"], 2) == (19, 2)
    fed = 0
    for k, (rows, seq) in enumerate(shapes.tolist()):
        ids, mask = tensors[f"input_ids.{k}"], tensors[f"attention_mask.{k}"]
        assert ids.shape == mask.shape == (rows, seq) and ids.dtype == mask.dtype == np.int64
        assert rows == (16 if k < 18 else 300 - 18 * 16)
        for row in range(rows):
            item = order[fed + row]
            length = int(sizes[item])
            assert mask[row].sum() == length and mask[row, :length].all()  # right padding
            assert (ids[row, length:] == tokens.pad).all()
            body = ids[row, len(tokens.prefix):length - len(tokens.suffix)]
            assert ((body >= tokens.regular[0]) & (body < tokens.regular[1])).all()
            assert tuple(ids[row, :len(tokens.prefix)]) == tokens.prefix
            assert tuple(ids[row, length - len(tokens.suffix):length]) == tokens.suffix
        assert seq == max(int(sizes[i]) for i in order[fed:fed + rows])  # padded to the batch's longest row
        fed += rows
    assert fed == stats["items"] == 300
    assert stats["longest"] == int(sizes.max()) == int(shapes[:, 1].max())
    assert stats["real_tokens"] == int(sizes.sum())
    assert stats["padded_tokens"] == int((shapes[:, 0] * shapes[:, 1]).sum())
    assert stats["padding_waste"] == pytest.approx(1 - stats["real_tokens"] / stats["padded_tokens"])


def test_sorted_feed_is_by_length_descending_and_stable():
    sizes = np.array([5, 9, 5, 12, 9, 5], dtype=np.int64)
    tensors, _ = make_corpus(BERT, sizes, 4, sort=True, seed=0)
    assert tensors["order"].tolist() == [3, 1, 4, 0, 2, 5]
    assert tensors["batches"].tolist() == [[4, 12], [2, 5]]
    unsorted, _ = make_corpus(BERT, sizes, 4, sort=False, seed=0)
    assert unsorted["order"].tolist() == list(range(6))
    # the same item gets the same ids whichever the feed order
    assert np.array_equal(tensors["input_ids.0"][0, :12], unsorted["input_ids.0"][3, :12])


def test_sorting_cuts_padding_waste():
    _, unsorted = corpus(n=1024, batch=32)
    _, ordered = corpus(n=1024, batch=32, sort=True)
    assert ordered["padding_waste"] < unsorted["padding_waste"]
    assert ordered["real_tokens"] == unsorted["real_tokens"]
    assert 0 <= ordered["padding_waste"] < 0.2 < unsorted["padding_waste"] < 1


def test_short_lengths_keep_one_regular_token():
    tensors, stats = make_corpus(BERT, np.array([1, 2, 3]), 3, sort=False, seed=0)
    assert tensors["attention_mask.0"].sum(axis=1).tolist() == [3, 3, 3]
    assert stats["real_tokens"] == 9 and stats["padding_waste"] == 0.0


def test_registry_token_schemes_work():
    spec = get_model("sentence-transformers/all-MiniLM-L6-v2")
    tensors, stats = make_corpus(spec.token_scheme("tiny"), lengths(n=50, high=128), 8, sort=True, seed=0)
    assert stats["batches"] == 7 and tensors["input_ids.0"].max() < 2048


def test_write_corpus_round_trips_in_the_file_format(tmp_path):
    tensors, stats = corpus(n=40, batch=16)
    path = write_corpus(tmp_path / "sub" / "corpus.safetensors", tensors, metadata={"seed": "0"})
    back = load_file(str(path))
    assert set(back) == {"batches", "order"} | {f"{n}.{k}" for n in ("input_ids", "attention_mask") for k in range(3)}
    assert all(np.array_equal(back[k], tensors[k]) and back[k].dtype == np.int64 for k in tensors)
    assert not list(tmp_path.glob("sub/*.tmp"))
