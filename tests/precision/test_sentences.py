"""The accuracy corpus: real sentences, deterministic, through the model's own tokenizer, in the corpus format."""

import numpy as np
import pytest
from safetensors.numpy import load_file

from embedperf.models.registry import get_model
from embedperf.models.sources import locate
from embedperf.runners.harness import corpus_inputs
from embedperf.workload import corpus, sentences

MINILM = get_model("sentence-transformers/all-MiniLM-L6-v2")


def test_stdlib_sentences_are_prose_deterministic_and_split_in_two_disjoint_parts():
    pool = sentences.stdlib_sentences()
    assert len(pool) > 1000 and pool == sentences.stdlib_sentences()
    assert all(s[0].isupper() and s.endswith(".") and 6 <= len(s.split()) <= 48 for s in pool)
    assert not any(">>>" in s or "(" in s for s in pool)
    evaluation, calibration = sentences.choose("evaluation", 400), sentences.choose("calibration", 400)
    assert len(evaluation) == len(calibration) == 400 and not set(evaluation) & set(calibration)
    assert sentences.choose("evaluation", 50) == evaluation[:50]  # a smaller corpus is a prefix of a larger one


def test_prose_filter_drops_code_and_lists():
    doc = ("Return the number of items in the queue right now.\n\n"
           "Example::\n\n    >>> q.qsize()\n    0\n\n"
           "- a bullet item that is long enough to count as words\n\n"
           "Short one. This sentence, however, has enough plain words to pass the filter.")
    assert sentences.prose_sentences(doc) == ["Return the number of items in the queue right now.",
                                              "This sentence, however, has enough plain words to pass the filter."]


def test_a_users_file_is_one_text_per_line(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("The cat sat on the mat.\n\nA dog barked twice.\nThe cat sat on the mat.\n")
    assert sorted(sentences.file_sentences(path)) == ["A dog barked twice.", "The cat sat on the mat."]
    path.write_text("only one line\n")
    with pytest.raises(ValueError, match="at least 2"):
        sentences.file_sentences(path)


def test_minilm_corpus_uses_the_real_tokenizer_and_the_throughput_format(tmp_path):
    folder = locate(MINILM, "package").folder
    w = sentences.ensure(MINILM, "package", folder, tmp_path, items=64, batch=16)
    assert w.facts["real_text"] and w.facts["items"] == 64 and w.facts["kind"] == "sentences"
    tensors = load_file(str(w.path))
    feeds, items = corpus_inputs(tensors, 16, w.facts["longest"])  # what a runner's harness reads
    assert items == 64 and len(feeds) == 4
    first = feeds[0]["input_ids"][0][feeds[0]["attention_mask"][0] == 1]
    assert first[0] == 101 and first[-1] == 102  # [CLS] ... [SEP] from the tokenizer's own post-processor
    # no padding inside the tokenizer: rows are as long as their sentence, and batches are sorted longest first
    lengths = np.concatenate([f["attention_mask"].sum(1) for f in feeds])
    assert (np.diff(lengths) <= 0).all() and lengths.min() < lengths.max() <= 128
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    texts = sentences.choose("evaluation", 64)
    row = int(np.flatnonzero(tensors["order"] == 0)[0])  # where corpus item 0 was fed
    k, r = divmod(row, 16)
    ids = feeds[k]["input_ids"][r][feeds[k]["attention_mask"][r] == 1]
    assert ids.tolist() == tok.encode(texts[0]).ids
    # written once, then reused
    assert sentences.ensure(MINILM, "package", folder, tmp_path, items=64, batch=16).path == w.path


def test_models_without_a_tokenizer_get_seeded_ids_and_say_so(tmp_path):
    spec = get_model("google/embeddinggemma-300m")
    w = sentences.ensure(spec, "tiny", None, tmp_path, items=40, batch=8)
    assert not w.facts["real_text"] and "accuracy cost not meaningful" in w.facts["text"]
    tensors = load_file(str(w.path))
    feeds, items = corpus_inputs(tensors, 8, w.facts["longest"])
    assert items == 40
    tokens = spec.token_scheme("tiny")
    low, high = tokens.regular
    row = feeds[0]["input_ids"][0][feeds[0]["attention_mask"][0] == 1]
    assert row[0] == tokens.prefix[0] and row[-1] == tokens.suffix[0] and ((row[1:-1] >= low) & (row[1:-1] < high)).all()
    other = sentences.corpus_tensors(spec, "tiny", None, part="calibration", items=40, batch=8)[0]
    assert not np.array_equal(other["input_ids.0"], tensors["input_ids.0"])  # the two parts differ


def test_in_corpus_order_undoes_the_feed_order():
    order = np.array([2, 0, 1])
    fed = np.array([[20.0], [0.0], [10.0]])  # rows of items 2, 0, 1 in feed order
    assert corpus.in_corpus_order(fed, order).ravel().tolist() == [0.0, 10.0, 20.0]
