"""Real sentences through the model's own tokenizer: the corpus the accuracy cost is measured on.

Offline and deterministic: the docstrings of a fixed list of standard-library modules, read from
their source files with `ast` (nothing is imported), split into sentences, filtered to prose and
ordered by their sha256; or the user's own file (`--corpus FILE`, one text per non-empty line).
Each sentence falls in one of two disjoint parts by its hash: `evaluation` (the accuracy corpus) and
`calibration` (what NNCF's static int8 quantization is calibrated on), so no cell is scored on the
rows it was calibrated with.

The corpus is written in the throughput corpus format (docs/protocol.md, Files), sorted by length to
cut padding; `order` maps the fed rows back to the corpus. Models without a tokenizer (twins, tiny
configs) get seeded token ids of log-normal lengths instead: their weights are random, so only the
cosine to the fp32 reference means anything there.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import sysconfig
from pathlib import Path

import numpy as np

from embedperf.models.registry import ModelSpec
from embedperf.workload import corpus
from embedperf.workload.captions import TokenizerError, _encoder

SENTENCES_VERSION = 1
DEFAULT_ITEMS = 512
DEFAULT_BATCH = 32
PARTS = ("evaluation", "calibration")

# Prose-rich modules whose docstrings exist in every CPython 3.11+; read as files, never imported.
STDLIB_FILES = (
    "argparse.py", "asyncio/events.py", "asyncio/locks.py", "asyncio/queues.py", "asyncio/streams.py",
    "asyncio/tasks.py", "bisect.py", "calendar.py", "cmd.py", "codecs.py", "collections/__init__.py",
    "configparser.py", "contextlib.py", "copy.py", "csv.py", "dataclasses.py", "datetime.py", "decimal.py",
    "_pydecimal.py", "difflib.py", "doctest.py", "email/message.py", "email/utils.py", "enum.py", "filecmp.py",
    "fnmatch.py", "fractions.py", "ftplib.py", "functools.py", "getopt.py", "gettext.py", "glob.py", "gzip.py",
    "heapq.py", "hmac.py", "http/client.py", "http/cookiejar.py", "http/server.py", "imaplib.py", "inspect.py",
    "ipaddress.py", "json/__init__.py", "json/decoder.py", "json/encoder.py", "locale.py", "logging/__init__.py",
    "logging/handlers.py", "mailbox.py", "mimetypes.py", "multiprocessing/pool.py", "netrc.py", "numbers.py",
    "optparse.py", "os.py", "pathlib.py", "pdb.py", "pickle.py", "pkgutil.py", "platform.py", "plistlib.py",
    "poplib.py", "pprint.py", "queue.py", "random.py", "reprlib.py", "sched.py", "secrets.py", "selectors.py",
    "shlex.py", "shutil.py", "smtplib.py", "socket.py", "socketserver.py", "ssl.py", "statistics.py", "string.py",
    "subprocess.py", "tarfile.py", "tempfile.py", "textwrap.py", "threading.py", "timeit.py", "tokenize.py",
    "trace.py", "traceback.py", "typing.py", "unittest/case.py", "unittest/mock.py", "urllib/parse.py",
    "urllib/request.py", "uuid.py", "warnings.py", "weakref.py", "xml/dom/minidom.py", "zipfile/__init__.py",
    "zipfile.py", "zipimport.py",
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CODE_HINTS = (">>>", "::", "=", "(", "{", "[", "`", "\\", "__", "http", "%", "|", "*")


def _docstrings(source: str) -> list[str]:
    """Every module, class and function docstring of one source file, in file order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    docs = [ast.get_docstring(n, clean=True) for n in nodes]
    return [d for d in docs if d]


def prose_sentences(doc: str) -> list[str]:
    """The plain-English sentences of a docstring: code, lists and fragments left out."""
    out = []
    for paragraph in re.split(r"\n\s*\n", doc):
        lines = paragraph.splitlines()
        if any(ln.startswith((" ", "\t", "-", "*", ">>>")) for ln in lines):
            continue  # indented blocks, bullet lists and examples are not prose
        text = " ".join(ln.strip() for ln in lines)
        for sentence in _SENTENCE_END.split(text):
            sentence = sentence.strip()
            words = sentence.split()
            if not (6 <= len(words) <= 48) or not sentence.endswith(".") or not sentence[0].isupper():
                continue
            if any(h in sentence for h in _CODE_HINTS):
                continue
            letters = sum(c.isalpha() or c == " " for c in sentence)
            if letters / len(sentence) < 0.9:
                continue
            out.append(sentence)
    return out


def stdlib_sentences(stdlib: Path | None = None) -> list[str]:
    """Distinct prose sentences of the standard library's docstrings, ordered by sha256 (deterministic)."""
    root = Path(stdlib or sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    for name in STDLIB_FILES:
        path = root / name
        if not path.is_file():
            continue
        for doc in _docstrings(path.read_text(encoding="utf-8", errors="replace")):
            seen.update(prose_sentences(doc))
    if len(seen) < 100:
        raise TokenizerError(f"only {len(seen)} sentences found in the standard library's sources under {root}: "
                             "give a corpus file (--corpus FILE, one text per line)")
    return sorted(seen, key=_digest)


def file_sentences(path: Path) -> list[str]:
    """A user's corpus: one text per non-empty line, first occurrence kept, ordered by sha256."""
    texts = dict.fromkeys(ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip())
    if len(texts) < 2:
        raise ValueError(f"{path} holds {len(texts)} distinct line(s); an accuracy corpus needs at least 2")
    return sorted(texts, key=_digest)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def choose(part: str, items: int, corpus_file: Path | None = None) -> list[str]:
    """`items` sentences of one part (evaluation | calibration), disjoint from the other part."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose from {PARTS}")
    pool = file_sentences(corpus_file) if corpus_file else stdlib_sentences()
    # the hash's last hex digit splits the pool: even -> evaluation, odd -> calibration
    mine = [s for s in pool if (int(_digest(s)[-1], 16) % 2 == 0) == (part == "evaluation")]
    return mine[:items]


def has_tokenizer(folder: Path | None) -> bool:
    """Whether a snapshot folder carries tokenizer files of its own (real-weight sources do)."""
    if folder is None:
        return False
    return any(folder.glob("tokenizer.json")) or any(folder.glob("tokenizer_config.json")) or any(folder.glob("spiece*"))


def tokenize(spec: ModelSpec, folder: Path, texts: list[str], limit: int) -> list[np.ndarray]:
    """Each text through the snapshot's own tokenizer (with its special tokens), at most `limit` tokens."""
    encode = _encoder(folder)
    rows = []
    for text in texts:
        ids = list(encode(text))
        if len(ids) > limit:  # truncate the text, keep the closing special token
            ids = ids[:limit - 1] + [ids[-1]]
        rows.append(np.asarray(ids, dtype=np.int64))
    return rows


def corpus_tensors(spec: ModelSpec, source: str, folder: Path | None, part: str = "evaluation",
                   items: int = DEFAULT_ITEMS, batch: int = DEFAULT_BATCH, corpus_file: Path | None = None,
                   seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """The corpus tensors (throughput format, sorted by length) and the facts a cell reports about them."""
    width = spec.length_limit(source) if spec.multimodal else None  # a text tower takes exactly its length
    limit = min(spec.length_limit(source), spec.st_max_seq_length)
    if has_tokenizer(folder):
        texts = choose(part, items, corpus_file)
        rows = tokenize(spec, folder, texts, limit)
        facts = {"kind": "sentences", "real_text": True, "part": part,
                 "text": f"file {corpus_file}" if corpus_file else
                 f"standard-library docstrings (Python {sys.version.split()[0]})",
                 "texts_sha256": _digest(json.dumps(texts)), "tokenizer": f"the model's own ({folder})"}
    else:
        # sentence-like lengths (median 24 tokens); the part picks the seed, so the two parts differ
        part_seed = seed + PARTS.index(part)
        lengths = corpus.lengths(n=items, median=24, sigma=0.5, low=8, high=min(limit, 96), seed=part_seed)
        rows = corpus.seeded_items(spec.token_scheme(source), lengths, part_seed)
        facts = {"kind": "tokens", "real_text": False, "part": part,
                 "text": "seeded token ids (no tokenizer: weights random, accuracy cost not meaningful)"}
    tensors = corpus.pack(rows, spec.token_scheme(source).pad, batch, sort=True, width=width)
    sizes = np.asarray([len(r) for r in rows])
    facts.update(items=len(rows), batch=batch, batches=int(len(tensors["batches"])), longest=int(sizes.max()),
                 real_tokens=int(sizes.sum()), median_tokens=float(np.median(sizes)))
    return tensors, facts


def ensure(spec: ModelSpec, source: str, folder: Path | None, root: Path, part: str = "evaluation",
           items: int = DEFAULT_ITEMS, batch: int = DEFAULT_BATCH,
           corpus_file: Path | None = None) -> corpus.CorpusWorkload:
    """The sentence corpus file for a model, written once and reused (keyed by tokenizer files and texts)."""
    digest = hashlib.sha256()
    for p in sorted(folder.iterdir()) if has_tokenizer(folder) else []:
        if p.name.startswith(("tokenizer", "vocab", "merges", "spiece", "special_tokens")):
            digest.update(p.name.encode() + p.read_bytes())
    if corpus_file:
        digest.update(Path(corpus_file).read_bytes())
    ident = json.dumps({"v": SENTENCES_VERSION, "model": spec.name, "source": source, "part": part,
                        "items": items, "batch": batch, "tokenizer": digest.hexdigest(),
                        "python": sys.version.split()[0]}, sort_keys=True)
    path = Path(root) / ("sentences-" + hashlib.sha256(ident.encode()).hexdigest()[:16]) / f"{part}_b{batch}.safetensors"
    facts_path = path.with_suffix(".json")
    if not (path.exists() and facts_path.exists()):
        tensors, facts = corpus_tensors(spec, source, folder, part, items, batch, corpus_file)
        corpus.write_corpus(path, tensors, metadata={"part": part})
        facts_path.write_text(json.dumps(facts))
    return corpus.CorpusWorkload(path, json.loads(facts_path.read_text()))


def calibration_batches(spec: ModelSpec, source: str, folder: Path | None, rows: int = 256,
                        batch: int = 8) -> list[dict[str, np.ndarray]]:
    """Inputs to calibrate static int8 quantization on: `rows` rows of the calibration part, in batches.

    Real sentences through the model's tokenizer where the snapshot has one, else seeded ids.
    """
    tensors, _ = corpus_tensors(spec, source, folder, part="calibration", items=rows, batch=batch)
    feeds = []
    for k in range(len(tensors["batches"])):
        feed = {"input_ids": tensors[f"input_ids.{k}"], "attention_mask": tensors[f"attention_mask.{k}"]}
        feeds.append(feed)
    return feeds
