"""Real-text workloads: the model's own tokenizer, as sentence-transformers' encode uses it, timed apart."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from embedperf.models.registry import get_model
from embedperf.workload import texts
from snapshot_support import minilm_folder

SENTENCES = ["A man is eating food.", "A man is riding a white horse on an enclosed ground.", "Hi!",
             "The new movie is awesome and everyone in the theatre loved it, even the critics who rarely agree."]
MINILM = get_model("sentence-transformers/all-MiniLM-L6-v2")


@pytest.mark.parametrize("batch, seq", [(4, None), (6, None), (2, 8), (3, 32)])
def test_batches_are_what_sentence_transformers_feeds_the_model(batch, seq, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    w = texts.ensure(MINILM, minilm_folder(), SENTENCES, "test", batch, seq, tmp_path)
    got = load_file(str(w.path))
    rows = [SENTENCES[i % len(SENTENCES)] for i in range(batch)]
    model = st.SentenceTransformer(str(minilm_folder()), device="cpu")
    if seq:
        model.max_seq_length = seq
    want = model.preprocess(rows)
    if seq:  # --seq: padded to exactly seq
        assert got["input_ids"].shape == (batch, seq)
        width = want["input_ids"].shape[1]
        assert (got["input_ids"][:, :width] == want["input_ids"].numpy()).all()
        assert (got["input_ids"][:, width:] == MINILM.tokens.pad).all()
    else:
        assert (got["input_ids"] == want["input_ids"].numpy()).all()
        assert (got["attention_mask"] == want["attention_mask"].numpy()).all()
    assert w.seq == got["input_ids"].shape[1]
    assert (got["lengths"] == got["attention_mask"].sum(1)).all()
    assert w.facts["lengths"] == got["lengths"].tolist()
    assert w.facts["repeated"] == (batch > len(SENTENCES))
    assert w.facts["truncated"] == sum(n > (seq or 256) for n in
                                       [len(model.tokenizer(t)["input_ids"]) for t in rows])


def test_tokenization_is_timed_on_every_call_and_the_file_is_kept(tmp_path):
    first = texts.ensure(MINILM, minilm_folder(), SENTENCES, "test", 4, None, tmp_path)
    again = texts.ensure(MINILM, minilm_folder(), SENTENCES, "test", 4, None, tmp_path)
    assert first.path == again.path
    samples = first.facts["tokenize_ms"]
    assert len(samples) == texts.TOKENIZE_REPEATS and all(s > 0 for s in samples)
    assert first.facts["tokenize_ms_batch"] == pytest.approx(float(np.median(samples)))
    assert first.facts["tokenize_ms_per_text"] == pytest.approx(first.facts["tokenize_ms_batch"] / 4)
    assert first.facts["padding_waste"] == pytest.approx(1 - sum(first.facts["lengths"]) / (4 * first.seq))
    other = texts.ensure(MINILM, minilm_folder(), SENTENCES[::-1], "test", 4, None, tmp_path)
    assert other.path != first.path  # other texts, another workload


def test_read_texts_and_its_mistakes(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("one\n\n  \ntwo words\n")
    assert texts.read_texts(path) == ["one", "two words"]
    path.write_text("\n \n")
    with pytest.raises(texts.TextsError, match="no text in it"):
        texts.read_texts(path)
    with pytest.raises(texts.TextsError, match="no such file"):
        texts.read_texts(tmp_path / "missing.txt")
    with pytest.raises(texts.TextsError, match="needs BAAI/bge-m3's tokenizer"):
        texts.tokenizer_for(get_model("BAAI/bge-m3"), "twin")
    with pytest.raises(texts.TextsError, match="longer than"):
        texts.ensure(MINILM, minilm_folder(), ["x"], "t", 1, 4096, tmp_path)
