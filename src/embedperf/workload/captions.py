"""Captions for the text towers of CLIP and SigLIP, through the model's real tokenizer.

With real weights (hub or local sources) the text tower reads real captions: one per bundled sample
photograph, in the same order, so the zero-shot check pairs each picture with its own caption. Twins
have no tokenizer here and read seeded token ids instead (workload/text.py).

Text length is fixed by the model: CLIP pads to 77 with its EOS, SigLIP to 64 with its EOS (the mask
says which positions are real; SigLIP's tower ignores it, as it was trained).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from embedperf.models.registry import ModelSpec
from embedperf.workload.text import Workload

# in the order of workload.image.SKIMAGE_SAMPLES
CAPTIONS = (
    "a photo of an astronaut",
    "a photo of a cat",
    "a cup of coffee",
    "a rocket on a launch pad",
    "a red motorcycle",
    "galaxies in deep space",
    "a microscope image of stained tissue",
    "a photo of the back of an eye",
)


class TokenizerError(RuntimeError):
    """The snapshot has no usable tokenizer."""


def _encoder(folder: Path):
    """A function caption -> ids with the model's special tokens, from the snapshot's own files."""
    if (folder / "tokenizer.json").exists():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # a tokenizer.json may carry a padding setting (MiniLM's pads to 128): callers pad, to their own width
        tok.no_padding()
        return lambda text: tok.encode(text).ids
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder)
    except Exception as e:
        raise TokenizerError(f"{folder}: no tokenizer.json and transformers could not load one: {e}") from e
    return lambda text: tok(text)["input_ids"]


def encode(spec: ModelSpec, folder: Path, captions: list[str]) -> dict[str, np.ndarray]:
    """input_ids, attention_mask [N, L] and lengths [N], padded (right) to the tower's fixed length L."""
    length = spec.max_length
    tokens = spec.tokens
    encode_one = _encoder(folder)
    ids = np.full((len(captions), length), tokens.pad, dtype=np.int64)
    mask = np.zeros((len(captions), length), dtype=np.int64)
    lengths = np.zeros(len(captions), dtype=np.int64)
    for row, text in enumerate(captions):
        got = list(encode_one(text))
        if len(got) > length:  # truncate the text, keep the closing EOS
            got = got[:length - 1] + [got[-1]]
        ids[row, :len(got)] = got
        mask[row, :len(got)] = 1
        lengths[row] = len(got)
    return {"input_ids": ids, "attention_mask": mask, "lengths": lengths}


def ensure(spec: ModelSpec, folder: Path, batch: int, root: Path) -> Workload:
    """The caption workload for one batch (captions cycled when the batch is larger than the list)."""
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
    key = hashlib.sha256(json.dumps([spec.name, _tokenizer_digest(folder), CAPTIONS]).encode()).hexdigest()[:16]
    path = root / f"captions-{key}" / f"b{batch}_s{spec.max_length}.safetensors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(encode(spec, folder, captions), str(tmp), metadata={"captions": json.dumps(captions)})
        tmp.replace(path)
    return Workload(batch, spec.max_length, path)


ZERO_SHOT_VERSION = 1


def zero_shot_set(spec: ModelSpec, source: str, folder: Path | None, root: Path):
    """The fixed caption set every image is scored against, as a one-batch corpus (the accuracy scenario's
    format): the eight captions through the model's tokenizer when the snapshot has one, else eight seeded
    token rows of the tower's length (twins: random weights, the check compares logits only).

    A fixed set keeps the zero-shot check meaningful at every image batch: with one caption per image, a
    batch of one scores one caption against one image and its probability is always 1.
    """
    from embedperf.workload import corpus
    from embedperf.workload import text as seeded

    length = spec.length_limit(source)
    if folder is not None:  # real weights come with their tokenizer (as the caption workloads assume)
        encoded = encode(spec, folder, list(CAPTIONS))
        kind, ident = "captions", hashlib.sha256(json.dumps([_tokenizer_digest(folder), CAPTIONS]).encode())
    else:
        encoded = {k: v for k, v in load_file(seeded.ensure(spec, source, len(CAPTIONS), length, root).path).items()}
        kind, ident = "seeded token ids", hashlib.sha256(json.dumps([spec.name, source, length]).encode())
    rows = [encoded["input_ids"][i, :int(encoded["lengths"][i])] for i in range(len(CAPTIONS))]
    tensors = corpus.pack(rows, spec.token_scheme(source).pad, len(rows), sort=False, width=length)
    ident.update(str(ZERO_SHOT_VERSION).encode())
    path = root / f"zero-shot-{ident.hexdigest()[:16]}" / f"captions_b{len(rows)}.safetensors"
    if not path.exists():
        corpus.write_corpus(path, tensors, metadata={"kind": kind})
    facts = {"kind": kind, "real_text": kind == "captions", "items": len(rows), "batch": len(rows), "longest": length,
             "captions": list(CAPTIONS) if kind == "captions" else None}
    return corpus.CorpusWorkload(path, facts)


def _tokenizer_digest(folder: Path) -> str:
    """A hash of the snapshot's tokenizer files: a workload made with them is keyed by it."""
    digest = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.startswith(("tokenizer", "vocab", "merges", "spiece", "special_tokens")):
            digest.update(p.name.encode() + p.read_bytes())
    return digest.hexdigest()
