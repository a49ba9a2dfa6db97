"""Real-text workloads: sentences tokenized by the model's own tokenizer, with the tokenization timed apart.

`--text FILE` (one text per line), or any list of texts (the offline real-sentence corpus), becomes one
workload per batch size: rows are the first `batch` texts (the list repeats when it is shorter), each
tokenized as sentence-transformers' `encode` does it — the model's special tokens, truncation at its
max_seq_length (or at `--seq`), right padding to the batch's longest text (or to `--seq`). Every runtime then
reads the same ids, so its time is model time only; what tokenizing that batch costs is measured here, on
every call, with the `tokenizers` library (the Rust tokenizer behind transformers' fast tokenizers and
sentence-transformers' `encode`), and reported apart.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from embedperf.models.registry import ModelSpec

TEXTS_VERSION = 1
TOKENIZE_REPEATS = 20  # timed tokenizations of one batch, after one untimed


class TextsError(ValueError):
    """Texts or a tokenizer that cannot make a workload: one line saying why."""


@dataclass(frozen=True)
class TextWorkload:
    """A tokenized batch on disk, the length it is padded to, and what a cell reports about it."""

    batch: int
    seq: int  # padded width: the batch's longest text, or --seq
    path: Path
    facts: dict


def read_texts(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TextsError(f"--text {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TextsError(f"--text {path}: cannot read it as UTF-8 text ({e})".splitlines()[0]) from None
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise TextsError(f"--text {path}: no text in it (one text per line)")
    return texts


def snapshot_folder(spec: ModelSpec, source: str, path: str | None = None, revision: str | None = None) -> Path | None:
    """The folder holding the model's own files (and tokenizer), or None for twins and tiny models."""
    if source == "local":
        return Path(path).expanduser().resolve() if path else None
    if source == "package":
        from embedperf.models.sources import SourceError, _package_folder

        try:
            return _package_folder(spec)
        except SourceError as e:
            raise TextsError(str(e)) from None
    if source == "hub":
        from embedperf.models.resolve import hub_files
        from embedperf.models.snapshot import SnapshotError

        try:
            return hub_files(spec.name, revision)
        except SnapshotError as e:
            raise TextsError(str(e)) from None
    return None


def tokenizer_for(spec: ModelSpec, source: str, path: str | None = None, revision: str | None = None) -> Path:
    """The model's tokenizer.json (converted once from slow tokenizer files where the snapshot has no such file)."""
    from embedperf.models.snapshot import SnapshotError, tokenizer_file

    folder = snapshot_folder(spec, source, path, revision)
    if folder is None:
        raise TextsError(f"--text needs {spec.name}'s tokenizer, and source {source} has none (random weights from a "
                         "bundled config); use --source package, hub or local")
    try:
        found = tokenizer_file(folder)
    except SnapshotError as e:
        raise TextsError(str(e)) from None
    if found is None:
        raise TextsError(f"--text needs {spec.name}'s tokenizer, and {folder} holds none")
    return found


def load_tokenizer(tokenizer_path: Path, pad_id: int, max_length: int, pad_to: int | None,
                   lowercase: bool = False):
    """The tokenizer set up as `encode` uses it: truncation at max_length, right padding (to the longest, or pad_to)."""
    from tokenizers import Tokenizer, normalizers

    tok = Tokenizer.from_file(str(tokenizer_path))
    if lowercase:  # sentence_bert_config.json do_lower_case: sentence-transformers adds a Lowercase normalizer
        tok.normalizer = normalizers.Sequence([normalizers.Lowercase()] + ([tok.normalizer] if tok.normalizer else []))
    tok.enable_truncation(max_length)
    tok.enable_padding(direction="right", pad_id=pad_id, pad_token=tok.id_to_token(pad_id) or "[PAD]",
                       length=pad_to)
    return tok


def tokenize(tok, texts: list[str]) -> dict[str, np.ndarray]:
    """input_ids and attention_mask [B, L] and true lengths [B]: what a call of `encode` feeds the model."""
    encodings = tok.encode_batch(texts)
    ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": mask, "lengths": mask.sum(axis=1)}


def time_tokenization(tok, texts: list[str], repeats: int = TOKENIZE_REPEATS) -> list[float]:
    """Milliseconds per tokenization of the whole batch (ids to arrays included), after one untimed call."""
    tokenize(tok, texts)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        tokenize(tok, texts)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples


def _lowercase(folder: Path) -> bool:
    path = folder / "sentence_bert_config.json"
    try:
        return bool(json.loads(path.read_text()).get("do_lower_case")) if path.is_file() else False
    except (OSError, json.JSONDecodeError):
        return False


def ensure(spec: ModelSpec, folder: Path, texts: list[str], label: str, batch: int, seq: int | None,
           root: Path) -> TextWorkload:
    """The real-text workload of one batch (padded to its longest text, or to `seq`), written once and kept;
    tokenization is timed on every call, in this process. `folder` is the model's snapshot (its tokenizer)."""
    from embedperf.models.snapshot import SnapshotError, tokenizer_file

    try:
        tokenizer_path = tokenizer_file(Path(folder))
    except SnapshotError as e:
        raise TextsError(str(e)) from None
    if tokenizer_path is None:
        raise TextsError(f"{folder} holds no tokenizer: real texts need the model's own")
    if batch < 1:
        raise TextsError(f"batch must be >= 1, got {batch}")
    if seq is not None and seq > spec.max_length:
        raise TextsError(f"seq {seq} is longer than {spec.name} allows ({spec.max_length} positions)")
    rows = [texts[i % len(texts)] for i in range(batch)]
    max_length = min(seq or spec.st_max_seq_length, spec.max_length)
    lowercase = _lowercase(Path(folder))
    tok = load_tokenizer(tokenizer_path, spec.tokens.pad, max_length, seq, lowercase)
    samples = time_tokenization(tok, rows)
    arrays = tokenize(tok, rows)
    width = int(arrays["input_ids"].shape[1])
    full = load_tokenizer(tokenizer_path, spec.tokens.pad, 1 << 30, None, lowercase)
    full.no_padding()
    untruncated = [len(e.ids) for e in full.encode_batch(rows)]

    texts_sha = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    tokenizer_sha = hashlib.sha256(Path(tokenizer_path).read_bytes()).hexdigest()
    key = hashlib.sha256(json.dumps({"v": TEXTS_VERSION, "texts": texts_sha, "tokenizer": tokenizer_sha,
                                     "pad": spec.tokens.pad, "max_length": max_length, "lowercase": lowercase},
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = root / f"texts-{key}" / f"b{batch}_{'s' + str(seq) if seq else 'longest'}.safetensors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(arrays, str(tmp), metadata={"texts_sha256": texts_sha, "tokenizer_sha256": tokenizer_sha})
        tmp.replace(path)

    import tokenizers

    lengths = [int(x) for x in arrays["lengths"]]
    real, padded = sum(lengths), batch * width
    median = statistics.median(samples)
    facts = {
        "kind": "texts", "texts": label, "texts_sha256": texts_sha, "lines": len(texts),
        "repeated": batch > len(texts),
        "padding": f"right, to --seq {seq}" if seq else f"right, to the batch's longest ({width})",
        "truncation": max_length, "truncated": sum(n > max_length for n in untruncated),
        "lengths": lengths, "real_tokens": real, "padded_tokens": padded, "padding_waste": 1.0 - real / padded,
        "tokenizer": f"tokenizers {tokenizers.__version__}", "tokenizer_file": str(tokenizer_path),
        "tokenizer_sha256": tokenizer_sha, "lowercase": lowercase,
        "tokenize_ms": samples, "tokenize_ms_batch": median, "tokenize_ms_per_text": median / batch,
    }
    return TextWorkload(batch, width, path, facts)
