"""What a call returns beyond the sentence embedding (BGE-M3's sparse and multi-vector outputs), and the
host-side step of a sparse call: the lexical weights (docs/outputs.md).

The same rules are written in the Rust (native/rust/protocol/src/outputs.rs) and C++
(native/cpp/src/outputs.cpp) harnesses; tests/unit/test_output_modes.py holds the hand-computed case all three
must give.
"""

from __future__ import annotations

import numpy as np

DENSE = "sentence_embedding"
TOKEN_WEIGHTS = "token_weights"
COLBERT = "colbert_vectors"
LEXICAL_IDS = "lexical_ids"
LEXICAL_WEIGHTS = "lexical_weights"
LEXICAL_OFFSETS = "lexical_offsets"
# the graph output each output of request.model.outputs adds
GRAPH_OUTPUTS = {"dense": DENSE, "sparse": TOKEN_WEIGHTS, "colbert": COLBERT}


def lexical_weights(token_weights: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray,
                    unused: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BGE-M3's lexical weights of a batch from its per-token weights [B,S]: per row, for every token id, the
    largest weight it has at a real position (mask 1), keeping only weights > 0 and dropping `unused` ids (cls,
    eos, pad, unk), as FlagEmbedding's encode aggregates them.

    Returned in CSR form: ids I64 [N] and weights F32 [N], row r's entries at offsets[r]:offsets[r+1] (I64
    [B+1]), ids ascending within a row. (FlagEmbedding keeps no padding test: its padding holds the pad id,
    which it drops; the mask makes the result independent of what padding holds.)
    """
    w = np.asarray(token_weights)
    ids = np.asarray(input_ids)
    if w.shape != ids.shape or ids.shape != np.shape(attention_mask) or w.ndim != 2:
        raise ValueError(f"token weights {w.shape}, input ids {ids.shape} and mask {np.shape(attention_mask)} "
                         "must be the same [B,S]")
    keep = (np.asarray(attention_mask) != 0) & (w > 0) & ~np.isin(ids, np.asarray(unused, dtype=ids.dtype))
    rows, cols = np.nonzero(keep)
    tid, tw = ids[rows, cols], w[rows, cols]
    # by row, then id, then the largest weight first: the first entry of each (row, id) run is its max
    order = np.lexsort((-tw, tid, rows))
    rows, tid, tw = rows[order], tid[order], tw[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (tid[1:] != tid[:-1])
    offsets = np.zeros(len(w) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[first], minlength=len(w)), out=offsets[1:])
    return tid[first].astype(np.int64), tw[first].astype(np.float32), offsets


def rows_of_lexical(ids: np.ndarray, weights: np.ndarray, offsets: np.ndarray) -> list[dict[int, float]]:
    """The CSR lexical weights as one {token id: weight} per row (FlagEmbedding's form, for comparisons)."""
    return [dict(zip(ids[a:b].tolist(), weights[a:b].tolist())) for a, b in zip(offsets[:-1], offsets[1:])]


def check_outputs(out: dict, asked: tuple[str, ...], batch: int, seq: int) -> None:
    """Refuse an engine's outputs that are not exactly the graph outputs of `asked`, at the shapes the protocol
    gives them (sentence_embedding [B,D], token_weights [B,S], colbert_vectors [B,S-1,Dc])."""
    want = {GRAPH_OUTPUTS[o] for o in asked}
    if set(out) != want:
        raise ValueError(f"the engine returned {sorted(out)}, the request asks for {sorted(want)}")
    shapes = {name: np.shape(array) for name, array in out.items()}
    if len(shapes[DENSE]) != 2 or shapes[DENSE][0] != batch:
        raise ValueError(f"{DENSE} has shape {shapes[DENSE]}, expected [{batch}, D]")
    if TOKEN_WEIGHTS in shapes and shapes[TOKEN_WEIGHTS] != (batch, seq):
        raise ValueError(f"{TOKEN_WEIGHTS} has shape {shapes[TOKEN_WEIGHTS]}, expected {[batch, seq]}")
    if COLBERT in shapes and (len(shapes[COLBERT]) != 3 or shapes[COLBERT][:2] != (batch, seq - 1)):
        raise ValueError(f"{COLBERT} has shape {shapes[COLBERT]}, expected [{batch}, {seq - 1}, Dc]")
