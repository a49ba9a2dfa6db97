"""Text workloads: identical, seeded token ids for every runtime, one file per (batch, seq).

Row 0 is full length; the other rows have a seeded length in [seq/2, seq] and are
padded on the right, so every runner meets padding. Ids come from the family's
ordinary vocabulary (no special tokens), wrapped in its special tokens.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from embedperf.models.registry import ModelSpec, TokenScheme

WORKLOAD_VERSION = 1
DEFAULT_SEED = 0


class ShapeError(ValueError):
    """A shape the model cannot take."""


@dataclass(frozen=True)
class Workload:
    batch: int
    seq: int
    path: Path


def make_tokens(tokens: TokenScheme, batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded ids, mask and lengths for one shape."""
    wrap = len(tokens.prefix) + len(tokens.suffix)
    if seq <= wrap:
        raise ShapeError(f"seq {seq} leaves no room for text between {wrap} special tokens")
    rng = np.random.default_rng([seed, batch, seq])
    lengths = np.empty(batch, dtype=np.int64)
    lengths[0] = seq
    if batch > 1:
        lengths[1:] = rng.integers(max(wrap + 1, seq // 2), seq + 1, size=batch - 1)
    ids = np.full((batch, seq), tokens.pad, dtype=np.int64)
    mask = np.zeros((batch, seq), dtype=np.int64)
    low, high = tokens.regular
    for row, length in enumerate(lengths):
        body = rng.integers(low, high, size=int(length) - wrap)
        ids[row, :length] = np.concatenate([tokens.prefix, body, tokens.suffix]).astype(np.int64)
        mask[row, :length] = 1
    return {"input_ids": ids, "attention_mask": mask, "lengths": lengths}


def check_shape(spec: ModelSpec, source: str, seq: int) -> None:
    """Refuse shapes past the position table; warn past sentence-transformers' max_seq_length."""
    tokens = spec.token_scheme(source)
    wrap = len(tokens.prefix) + len(tokens.suffix)
    if seq <= wrap:
        raise ShapeError(f"seq {seq} leaves no room for text between {spec.name}'s {wrap} special tokens")
    limit = spec.length_limit(source)
    if seq > limit:
        raise ShapeError(f"seq {seq} is longer than {spec.name} allows ({limit} positions{' in its tiny config' if source == 'tiny' else ''})")
    if source != "tiny" and seq > spec.st_max_seq_length:
        warnings.warn(f"seq {seq} is above {spec.name}'s max_seq_length {spec.st_max_seq_length}: "
                      "sentence-transformers would truncate there", stacklevel=2)


def workload_key(tokens: TokenScheme, seed: int) -> str:
    blob = json.dumps({"v": WORKLOAD_VERSION, "tokens": tokens.__dict__, "seed": seed}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure(spec: ModelSpec, source: str, batch: int, seq: int, root: Path, seed: int = DEFAULT_SEED) -> Workload:
    """The workload file for one shape, written once and reused."""
    check_shape(spec, source, seq)
    tokens = spec.token_scheme(source)
    folder = root / workload_key(tokens, seed)
    path = folder / f"b{batch}_s{seq}.safetensors"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(make_tokens(tokens, batch, seq, seed), str(tmp),
                  metadata={"model_family": spec.family, "seed": str(seed), "version": str(WORKLOAD_VERSION)})
        tmp.replace(path)
    return Workload(batch, seq, path)

