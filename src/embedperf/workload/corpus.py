"""The throughput corpus: many items of varying length, fed in batches (docs/protocol.md, Files).

Item lengths are seeded log-normal draws (real sentence and passage lengths are
skewed: many short, a long tail), clipped to [low, high]. Each item is the family's
prefix, seeded ordinary ids, and its suffix; each batch is padded on the right to its
own longest row. Sorting the feed by length (descending) is what a serving stack does
to cut padding; the stats say how much padding each order costs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from embedperf.models.registry import TokenScheme

DEFAULT_ITEMS = 1024
DEFAULT_MEDIAN = 64
DEFAULT_SIGMA = 0.8
DEFAULT_LOW = 8
DEFAULT_HIGH = 512


def lengths(n: int = DEFAULT_ITEMS, median: float = DEFAULT_MEDIAN, sigma: float = DEFAULT_SIGMA,
            low: int = DEFAULT_LOW, high: int = DEFAULT_HIGH, seed: int = 0) -> np.ndarray:
    """n seeded log-normal token lengths (median `median`, log-sd `sigma`), rounded, clipped to [low, high]."""
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= low <= high, got low {low}, high {high}")
    draws = np.random.default_rng(seed).lognormal(mean=math.log(median), sigma=sigma, size=n)
    return np.clip(np.rint(draws), low, high).astype(np.int64)


def seeded_items(tokens: TokenScheme, lengths: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    """Item i: prefix + seeded regular ids + suffix, lengths[i] tokens in all (at least one regular id)."""
    wrap = len(tokens.prefix) + len(tokens.suffix)
    sizes = np.maximum(np.asarray(lengths, dtype=np.int64).ravel(), wrap + 1)
    if sizes.size == 0:
        raise ValueError("a corpus needs at least one item")
    low, high = tokens.regular
    rng = np.random.default_rng(seed)
    bodies = np.split(rng.integers(low, high, size=int((sizes - wrap).sum()), dtype=np.int64),
                      np.cumsum(sizes - wrap)[:-1])
    prefix = np.asarray(tokens.prefix, dtype=np.int64)
    suffix = np.asarray(tokens.suffix, dtype=np.int64)
    return [np.concatenate([prefix, body, suffix]) for body in bodies]


def make_corpus(tokens: TokenScheme, lengths: np.ndarray, batch: int, sort: bool,
                seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """The corpus tensors (`batches`, `input_ids.k`, `attention_mask.k`, `order`) and their stats.

    Item i is prefix + seeded regular ids + suffix, lengths[i] tokens in all (at least
    one regular id). Feed order: by length descending (stable) when `sort`, else corpus
    order. Batches of `batch` rows in feed order, each right-padded to its longest row.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    items = seeded_items(tokens, lengths, seed)
    sizes = np.asarray([len(item) for item in items], dtype=np.int64)
    n = sizes.size
    tensors = pack(items, tokens.pad, batch, sort)
    shapes = tensors["batches"].tolist()
    real = int(sizes.sum())
    padded = int(sum(rows * seq for rows, seq in shapes))
    stats = {
        "items": n,
        "batches": len(shapes),
        "batch": batch,
        "sorted": bool(sort),
        "longest": int(sizes.max()),  # the request's seq for this corpus
        "real_tokens": real,
        "padded_tokens": padded,
        "padding_waste": 1.0 - real / padded,
    }
    return tensors, stats


def pack(items: list[np.ndarray], pad: int, batch: int, sort: bool, width: int | None = None) -> dict[str, np.ndarray]:
    """Token rows as corpus tensors (`batches`, `input_ids.k`, `attention_mask.k`, `order`).

    Feed order: by length descending (stable) when `sort`, else corpus order. Batches of
    `batch` rows in feed order, each right-padded with `pad` to its longest row, or to
    `width` for a model that takes exactly that many positions (CLIP/SigLIP text towers).
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not items:
        raise ValueError("a corpus needs at least one item")
    sizes = np.asarray([len(item) for item in items], dtype=np.int64)
    if width is not None and int(sizes.max()) > width:
        raise ValueError(f"an item has {int(sizes.max())} tokens, more than the fixed width {width}")
    order = (np.argsort(-sizes, kind="stable") if sort else np.arange(sizes.size)).astype(np.int64)
    tensors: dict[str, np.ndarray] = {}
    shapes = []
    for k, first in enumerate(range(0, sizes.size, batch)):
        rows = order[first:first + batch]
        seq = width or int(sizes[rows].max())
        ids = np.full((rows.size, seq), pad, dtype=np.int64)
        mask = np.zeros((rows.size, seq), dtype=np.int64)
        for row, item in enumerate(rows):
            ids[row, :sizes[item]] = items[item]
            mask[row, :sizes[item]] = 1
        tensors[f"input_ids.{k}"] = ids
        tensors[f"attention_mask.{k}"] = mask
        shapes.append((rows.size, seq))
    tensors["batches"] = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
    tensors["order"] = order
    return tensors


def in_corpus_order(fed: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows written in feed order (a runner's embeddings) put back in corpus order."""
    out = np.empty_like(fed)
    out[np.asarray(order, dtype=np.int64)] = fed
    return out


def write_corpus(path: Path | str, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    """Write the corpus as safetensors (temp file, then rename, so a reader never sees half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({name: np.ascontiguousarray(array) for name, array in tensors.items()}, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


class CorpusWorkload:
    """A corpus file on disk and its stats (what a throughput cell reports)."""

    def __init__(self, path: Path, facts: dict):
        self.path, self.facts = path, facts


def ensure(tokens: TokenScheme, item_lengths: np.ndarray, batch: int, sort: bool, seed: int,
           root: Path) -> CorpusWorkload:
    """The corpus file for one batch size and order, written once and reused (keyed by its content)."""
    import hashlib
    import json

    ident = json.dumps({"v": 1, "tokens": [list(tokens.prefix), list(tokens.suffix), tokens.pad,
                                           list(tokens.regular)],
                        "lengths": hashlib.sha256(np.ascontiguousarray(item_lengths, dtype=np.int64)).hexdigest(),
                        "seed": seed}, sort_keys=True)
    folder = Path(root) / ("corpus-" + hashlib.sha256(ident.encode()).hexdigest()[:16])
    path = folder / f"n{len(item_lengths)}_b{batch}_{'sorted' if sort else 'unsorted'}.safetensors"
    facts_path = path.with_suffix(".json")
    if not (path.exists() and facts_path.exists()):
        tensors, stats = make_corpus(tokens, item_lengths, batch, sort, seed)
        stats["batch_shapes"] = tensors["batches"].tolist()
        write_corpus(path, tensors, metadata={"seed": str(seed), "sorted": str(sort)})
        facts_path.write_text(json.dumps(stats))
    return CorpusWorkload(path, json.loads(facts_path.read_text()))
