"""Read a model from its own snapshot files into a ModelSpec: any model of a family embedperf implements.

A snapshot is a folder as the hub or sentence-transformers' `save` writes it:

- `config.json`: the architecture (`model_type` gives the family), sizes and the position table;
- `modules.json` and its module folders: Pooling (`1_Pooling/config.json`, the new `pooling_mode` key or
  the legacy `pooling_mode_*` booleans), Dense layers (`*_Dense/config.json` + weights, with bias and
  activation as stored), Normalize; without `modules.json` sentence-transformers' own fallback applies
  (mean pooling, no Normalize);
- `sentence_bert_config.json` / `tokenizer_config.json`: sentence-transformers' max_seq_length;
  `config_sentence_transformers.json`: prompts;
- `tokenizer.json`: special tokens, pad id and the ordinary-id range (a snapshot with only the slow
  tokenizer files gets a `tokenizer.json` converted once by transformers, in a subprocess, and cached).

Everything a spec cannot express is refused with one line (SnapshotError) naming what is unsupported and
what is. Framework-free (json, numpy and the `tokenizers` library): the orchestrator derives while planning.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from embedperf.models.registry import DENSE_ACTIVATIONS, DenseHead, ModelSpec, TokenScheme

# config.json model_type -> the family whose graph every runtime implements
ARCHITECTURES = {"bert": "bert", "xlm-roberta": "xlm-roberta", "gemma3_text": "gemma3", "qwen3": "qwen3",
                 "clip": "clip", "siglip": "siglip"}
SUPPORTED = "bert, xlm-roberta, gemma3_text (bidirectional, as EmbeddingGemma), qwen3, clip, siglip"
# sentence-transformers' pooling modes (its names) -> ours; the legacy booleans in its concatenation order
ST_POOLING = {"cls": "cls", "max": "max", "mean": "mean", "mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
              "weightedmean": "weightedmean", "lasttoken": "last"}
LEGACY_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                       "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                       "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
# the torch.nn activation classes a Dense config may name (sentence-transformers imports them by path)
ACTIVATION_CLASSES = {"Identity": "identity", "Tanh": "tanh", "ReLU": "relu", "GELU": "gelu", "Sigmoid": "sigmoid",
                      "SiLU": "silu"}
MODULES = ("Transformer", "Pooling", "Dense", "Normalize", "Dropout")
# vocabulary entries that are reserved placeholders, not words: never put them in seeded text
RESERVED = re.compile(r"^(\[unused\d+\]|<unused\d+>|<extra_id_\d+>|\[PAD\d*\]|<pad\d*>)$")
SLOW_TOKENIZER_FILES = ("vocab.txt", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model", "vocab.json")
MAX_SANE_LENGTH = 1_000_000  # transformers writes model_max_length 1e30 for "no limit"


class SnapshotError(ValueError):
    """A snapshot embedperf cannot read or does not implement: one line saying what and why."""


def _json(path: Path, what: str) -> dict | list:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SnapshotError(f"{path.parent} has no {path.name}: {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SnapshotError(f"{path} is not valid JSON ({e})".splitlines()[0]) from None


def _optional_json(path: Path) -> dict:
    return _json(path, "") if path.is_file() else {}


def weight_files(folder: Path) -> list[Path]:
    """The transformer's weight files at the top of a snapshot (safetensors, else PyTorch pickles)."""
    files = sorted(folder.glob("*.safetensors"))
    return files or sorted(folder.glob("pytorch_model*.bin"))


def module_weight_file(folder: Path) -> Path | None:
    """The weights of a sentence-transformers module folder (a Dense layer)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


def family_of(config: dict, where: Path) -> str:
    """The family of a config.json, or one line naming the architecture and the supported ones."""
    model_type = config.get("model_type")
    arch = ", ".join(config.get("architectures") or []) or "no architectures listed"
    family = ARCHITECTURES.get(model_type)
    if family is None:
        raise SnapshotError(f"{where}: architecture {model_type!r} ({arch}) is not one embedperf implements; "
                            f"supported: {SUPPORTED}")
    if family == "gemma3" and not config.get("use_bidirectional_attention"):
        raise SnapshotError(f"{where}: a causal gemma3_text (no use_bidirectional_attention) is not an embedding "
                            f"architecture embedperf implements; supported: {SUPPORTED}")
    return family


def position_limit(family: str, config: dict) -> int:
    """The longest input the position table allows."""
    if family in ("clip", "siglip"):
        text = config.get("text_config") or {}
        return int(text.get("max_position_embeddings") or (77 if family == "clip" else 64))
    positions = int(config.get("max_position_embeddings") or 512)
    if family == "xlm-roberta":
        # XLM-R numbers positions from pad_token_id + 1 (transformers' create_position_ids_from_input_ids)
        return positions - int(config.get("pad_token_id", 1)) - 1
    return positions


def hidden_width(family: str, config: dict) -> int:
    """Width of what the transformer (or a tower's own head) gives."""
    if family == "clip":
        return int(config.get("projection_dim") or 512)
    if family == "siglip":
        text = config.get("text_config") or {}
        return int(text.get("projection_size") or text.get("hidden_size") or 768)
    return int(config["hidden_size"])


# -- sentence-transformers modules -------------------------------------------------------------------

def _module_kind(entry: dict, where: Path) -> str:
    kind = str(entry.get("type", "")).rsplit(".", 1)[-1]
    if kind not in MODULES:
        raise SnapshotError(f"{where}: module {entry.get('path') or entry.get('name')!r} of type {entry.get('type')!r} "
                            f"is not one embedperf implements ({', '.join(MODULES)})")
    return kind


def pooling_modes(cfg: dict, where: Path) -> tuple[str, ...]:
    """sentence-transformers' pooling modes of a Pooling config, new (`pooling_mode`) or legacy (booleans)."""
    if "pooling_mode" in cfg:
        raw = cfg["pooling_mode"]
        modes = (raw,) if isinstance(raw, str) else tuple(raw)
    else:
        modes = tuple(mode for key, mode in LEGACY_POOLING_KEYS.items() if cfg.get(key))
        modes = modes or ("mean",)  # what sentence-transformers does with no mode set
    unknown = [m for m in modes if m not in ST_POOLING]
    if unknown or not modes:
        raise SnapshotError(f"{where}: unknown pooling mode {', '.join(map(repr, unknown)) or 'none'}; "
                            f"sentence-transformers' modes are: {', '.join(ST_POOLING)}")
    return modes


def dense_head(folder: Path, need_weights: bool = True) -> DenseHead:
    """One Dense layer as stored: sizes, bias, activation (sentence-transformers' default activation is Tanh)."""
    cfg = _json(folder / "config.json", "a Dense module needs its config.json")
    if cfg.get("use_residual"):
        raise SnapshotError(f"{folder}: a Dense layer with use_residual is not one embedperf implements")
    for key in ("module_input_name", "module_output_name"):
        if cfg.get(key, "sentence_embedding") != "sentence_embedding":
            raise SnapshotError(f"{folder}: a Dense layer on {cfg[key]!r} (not the sentence embedding) is not one "
                                "embedperf implements")
    path = cfg.get("activation_function", "torch.nn.modules.activation.Tanh")
    activation = ACTIVATION_CLASSES.get(str(path).rsplit(".", 1)[-1]) if str(path).startswith("torch.") else None
    if activation is None:
        raise SnapshotError(f"{folder}: Dense activation {path!r} is not one embedperf implements "
                            f"({', '.join(DENSE_ACTIVATIONS)})")
    if need_weights and module_weight_file(folder) is None:
        raise SnapshotError(f"{folder} holds no weights (model.safetensors or pytorch_model.bin)")
    try:
        return DenseHead(int(cfg["in_features"]), int(cfg["out_features"]), bool(cfg.get("bias", True)), activation)
    except (KeyError, TypeError, ValueError):
        raise SnapshotError(f"{folder / 'config.json'}: a Dense config needs integer in_features and "
                            "out_features") from None


def read_modules(folder: Path, family: str, need_weights: bool = True) -> dict:
    """Pooling, Dense heads and Normalize from modules.json (sentence-transformers' fallback without one)."""
    path = folder / "modules.json"
    multimodal = family in ("clip", "siglip")
    if not path.is_file():
        # SentenceTransformer(path) on a plain transformers folder: Transformer + mean Pooling, no Normalize;
        # a two-tower model is its own pooling and projection.
        return {"modes": () if multimodal else ("mean",), "dense": (), "dense_dirs": (), "normalize": multimodal,
                "include_prompt": True, "from": "no modules.json: sentence-transformers' default"}
    entries = _json(path, "")
    if not isinstance(entries, list) or not entries:
        raise SnapshotError(f"{path} is not a list of modules")
    entries = sorted(entries, key=lambda e: int(e.get("idx", 0)))
    kinds = [_module_kind(e, path) for e in entries]
    if kinds[0] != "Transformer":
        raise SnapshotError(f"{path}: the first module is {kinds[0]}, not the Transformer")
    if entries[0].get("path", "") not in ("", "."):
        raise SnapshotError(f"{path}: the Transformer lives in {entries[0]['path']!r}; embedperf reads snapshots "
                            "whose transformer is at the top of the folder (point --path there)")
    out = {"modes": (), "dense": [], "dense_dirs": [], "normalize": False, "include_prompt": True,
           "from": "modules.json"}
    stage = "Transformer"
    for entry, kind in zip(entries[1:], kinds[1:]):
        sub = folder / entry.get("path", "")
        if kind == "Dropout":
            continue  # identity at inference
        if kind == "Transformer" or (multimodal and kind in ("Pooling", "Dense")):
            raise SnapshotError(f"{path}: a {kind} module after the first Transformer is not one embedperf "
                                f"implements for {family}")
        if stage == "Normalize":
            raise SnapshotError(f"{path}: a {kind} module after Normalize is not one embedperf implements")
        if kind == "Pooling":
            if stage != "Transformer":
                raise SnapshotError(f"{path}: a second Pooling module is not one embedperf implements")
            cfg = _json(sub / "config.json", "a Pooling module needs its config.json")
            out["modes"] = pooling_modes(cfg, sub / "config.json")
            out["include_prompt"] = bool(cfg.get("include_prompt", True))
            out["pooling_width"] = cfg.get("embedding_dimension", cfg.get("word_embedding_dimension"))
        elif kind == "Dense":
            if stage == "Transformer":
                raise SnapshotError(f"{path}: a Dense module before Pooling is not one embedperf implements")
            out["dense"].append(dense_head(sub, need_weights))
            out["dense_dirs"].append(entry.get("path", ""))
        elif kind == "Normalize":
            out["normalize"] = True
        stage = kind
    if not multimodal and not out["modes"]:
        raise SnapshotError(f"{path}: no Pooling module; embedperf embeds with sentence-transformers' Pooling")
    if multimodal:
        out["normalize"] = True  # a tower's embedding is L2-normalised by definition (docs/protocol.md, Towers)
    out["dense"], out["dense_dirs"] = tuple(out["dense"]), tuple(out["dense_dirs"])
    return out


# -- tokenizer -----------------------------------------------------------------------------------------

def _token_text(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def tokenizer_file(folder: Path, cache: Path | None = None) -> Path | None:
    """The snapshot's tokenizer.json, or one converted once from its slow tokenizer files (cached)."""
    own = folder / "tokenizer.json"
    if own.is_file():
        return own
    slow = [folder / n for n in SLOW_TOKENIZER_FILES if (folder / n).is_file()]
    if not slow:
        return None
    from embedperf.paths import cache_root

    digest = hashlib.sha256()
    for p in slow + [folder / n for n in ("tokenizer_config.json", "special_tokens_map.json", "merges.txt")
                     if (folder / n).is_file()]:
        digest.update(p.name.encode())
        digest.update(p.read_bytes())
    out = (cache or cache_root() / "tokenizers") / digest.hexdigest()[:20] / "tokenizer.json"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        # transformers imports torch: convert in a subprocess, as sentence-transformers' AutoTokenizer would load it
        proc = subprocess.run([sys.executable, "-m", "embedperf.models.snapshot", "convert", str(folder), str(out)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not out.is_file():
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise SnapshotError(f"{folder}: no tokenizer.json, and transformers could not convert its tokenizer "
                                f"({lines[-1] if lines else 'no output'})")
    return out


def token_scheme(tokenizer_path: Path, folder: Path, config: dict, family: str) -> TokenScheme:
    """Special tokens around a text, the pad id and the longest run of ordinary ids, from the tokenizer."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.no_truncation()
    enc = tok.encode("a photo of a cat")
    ids, special = list(enc.ids), list(enc.special_tokens_mask)
    lead = next((i for i, s in enumerate(special) if not s), len(ids))
    tail = next((i for i, s in enumerate(reversed(special)) if not s), 0)
    prefix, suffix = tuple(ids[:lead]), tuple(ids[len(ids) - tail:])

    tok_cfg = _optional_json(folder / "tokenizer_config.json")
    special_map = _optional_json(folder / "special_tokens_map.json")
    pad_text = _token_text(tok_cfg.get("pad_token")) or _token_text(special_map.get("pad_token"))
    pad = tok.token_to_id(pad_text) if pad_text else None
    text_config = (config.get("text_config") or {}) if family in ("clip", "siglip") else config
    if pad is None:
        pad = text_config.get("pad_token_id")
    if pad is None:
        pad = suffix[-1] if suffix else 0  # padded positions are masked; the id only has to exist

    vocab = min(tok.get_vocab_size(with_added_tokens=True), int(text_config.get("vocab_size") or 1 << 62))
    ordinary = np.ones(vocab, dtype=bool)
    for token_id in tok.get_added_tokens_decoder():
        if token_id < vocab:
            ordinary[token_id] = False
    for text, token_id in tok.get_vocab(with_added_tokens=True).items():
        if token_id < vocab and RESERVED.match(text):
            ordinary[token_id] = False
    for token_id in (*prefix, *suffix, pad):
        if 0 <= token_id < vocab:
            ordinary[token_id] = False
    # the longest run of ordinary ids: seeded workloads draw from it
    padded = np.concatenate([[False], ordinary, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[::2], edges[1::2]
    if starts.size == 0:
        raise SnapshotError(f"{tokenizer_path}: no ordinary token ids below vocab_size {vocab}")
    best = int(np.argmax(ends - starts))
    return TokenScheme(prefix=prefix, suffix=suffix, pad=int(pad), regular=(int(starts[best]), int(ends[best])))


def st_max_seq_length(folder: Path, limit: int) -> tuple[int, str]:
    """sentence-transformers' max_seq_length: sentence_bert_config.json, else the tokenizer's model_max_length,
    capped by the position table as sentence-transformers caps it."""
    sbert = _optional_json(folder / "sentence_bert_config.json")
    if isinstance(sbert.get("max_seq_length"), int):
        return min(sbert["max_seq_length"], limit), "sentence_bert_config.json"
    tok_cfg = _optional_json(folder / "tokenizer_config.json")
    length = tok_cfg.get("model_max_length")
    if isinstance(length, (int, float)) and 0 < length < MAX_SANE_LENGTH:
        return min(int(length), limit), "tokenizer_config.json model_max_length"
    return limit, "the position table"


def image_facts(folder: Path, family: str, config: dict) -> int:
    """The image side of a tower, refused when its preprocessing is not the recipe embedperf implements."""
    from embedperf.workload.image import RECIPES

    vision = config.get("vision_config") or {}
    size = vision.get("image_size", 224)
    size = size[0] if isinstance(size, list) and len(set(size)) == 1 else size
    if not isinstance(size, int):
        raise SnapshotError(f"{folder}: image_size {size!r} is not one square side")
    pre = _optional_json(folder / "preprocessor_config.json")
    recipe = RECIPES[family]
    for key in ("image_mean", "image_std"):
        want = recipe[key.split("_")[1]]
        if key in pre and any(abs(float(a) - b) > 1e-6 for a, b in zip(pre[key], want)):
            raise SnapshotError(f"{folder}: preprocessor_config.json {key} {pre[key]} differs from the {family} "
                                f"recipe embedperf implements ({list(want)})")
    return int(size)


# -- the spec ------------------------------------------------------------------------------------------

def derive(folder: Path, name: str, need_weights: bool = True) -> ModelSpec:
    """The ModelSpec of the model a snapshot folder holds, read from its own files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SnapshotError(f"{folder} is not a folder: give --path a model snapshot folder")
    config = _json(folder / "config.json", "give --path a model snapshot folder (transformers' config.json)")
    family = family_of(config, folder / "config.json")
    if need_weights and not weight_files(folder):
        raise SnapshotError(f"{folder} holds no weights (*.safetensors or pytorch_model.bin)")
    modules = read_modules(folder, family, need_weights)
    limit = position_limit(family, config)
    st_max, st_max_from = st_max_seq_length(folder, limit)
    tokenizer = tokenizer_file(folder)
    if tokenizer is None:
        raise SnapshotError(f"{folder} has no tokenizer (tokenizer.json or a slow tokenizer's files): embedperf "
                            "reads special tokens, the pad id and ordinary ids from it")
    tokens = token_scheme(tokenizer, folder, config, family)
    multimodal = family in ("clip", "siglip")
    width = hidden_width(family, config)
    modes = modules["modes"]
    pooled = width * max(1, len(modes))
    if not multimodal and modules.get("pooling_width") not in (None, width):
        raise SnapshotError(f"{folder}: the Pooling module expects {modules['pooling_width']}-wide token embeddings, "
                            f"config.json says hidden_size {width}")
    for i, head in enumerate(modules["dense"]):
        expected = pooled if i == 0 else modules["dense"][i - 1].out_features
        if head.in_features != expected:
            raise SnapshotError(f"{folder / modules['dense_dirs'][i]}: Dense takes {head.in_features} inputs, the "
                                f"layer before it gives {expected}")
    output_dim = modules["dense"][-1].out_features if modules["dense"] else pooled
    st_cfg = _optional_json(folder / "config_sentence_transformers.json")
    prompts = {str(k): str(v) for k, v in (st_cfg.get("prompts") or {}).items()}
    pooling = "tower" if multimodal else "+".join(ST_POOLING[m] for m in modes)
    derived = {
        "snapshot": str(folder.resolve()),
        "family": f"config.json model_type {config.get('model_type')}",
        "pooling": modules["from"] + (f" ({', '.join(modes)})" if modes else ""),
        "include_prompt": modules["include_prompt"],
        "dense": list(modules["dense_dirs"]),
        "normalize": modules["from"],
        "max_length": "config.json position table",
        "st_max_seq_length": st_max_from,
        "tokens": str(tokenizer if tokenizer.parent == folder else f"converted: {tokenizer}"),
        "tokenizer": str(tokenizer),
    }
    return ModelSpec(
        name=name, family=family, pooling=pooling, output_dim=output_dim, max_length=limit,
        st_max_seq_length=st_max, config="", tiny_config="", tokens=tokens, tiny_tokens=tokens,
        tiny_max_length=limit, dense=modules["dense"], normalize=modules["normalize"], prompts=prompts,
        hub_dense_dirs=modules["dense_dirs"],
        modalities=("text", "image") if multimodal else ("text",),
        image_size=image_facts(folder, family, config) if multimodal else None,
        image_preprocess=family if multimodal else None,
        snapshot_config=config, derived=derived,
    )


def _convert(folder: str, out: str) -> int:
    """Subprocess entry: write the fast tokenizer transformers builds from a snapshot's slow tokenizer files."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        print(f"{folder}: transformers gave no fast tokenizer", file=sys.stderr)
        return 1
    tmp = Path(out).with_suffix(".tmp")
    backend.save(str(tmp))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "convert":
        sys.exit(_convert(sys.argv[2], sys.argv[3]))
    print("usage: python -m embedperf.models.snapshot convert SNAPSHOT_DIR OUT/tokenizer.json", file=sys.stderr)
    sys.exit(2)
