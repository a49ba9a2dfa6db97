"""Reading a model from its own files: the facts are right, the registry's checked facts are reproduced, and what
embedperf does not implement is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import shared_models
from embedperf.models.registry import MODELS, DenseHead, get_model
from embedperf.models.resolve import folder_name, resolve
from embedperf.models.snapshot import SnapshotError, derive
from snapshot_support import minilm_folder, snapshot, write_tokenizer  # noqa: F401 (fixture)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SHARED = {"Qwen/Qwen3-Embedding-0.6B": "Qwen__Qwen3-Embedding-0.6B",
          "openai/clip-vit-base-patch16": "openai__clip-vit-base-patch16",
          "google/embeddinggemma-300m": "google__embeddinggemma-300m", "BAAI/bge-m3": "BAAI__bge-m3",
          "google/siglip-base-patch16-224": "google__siglip-base-patch16-224"}
FAMILY_LAYOUT = {"google/embeddinggemma-300m": "gemma3", "BAAI/bge-m3": "xlm-roberta",
                 "google/siglip-base-patch16-224": "siglip"}


def test_the_real_minilm_folder_reads_as_the_registry_entry():
    derived = derive(minilm_folder(), "x")
    entry = get_model(MINILM)
    for fact in ("family", "pooling", "dense", "normalize", "output_dim", "max_length", "st_max_seq_length", "tokens"):
        assert getattr(derived, fact) == getattr(entry, fact), fact
    assert derived.derived["pooling"] == "modules.json (mean)"  # the legacy pooling_mode_* booleans
    # named or not, the folder with the registry's checked weights is the registry's model
    assert resolve(None, "local", str(minilm_folder())) is entry
    assert resolve(MINILM, "local", str(minilm_folder())) is entry


@pytest.mark.parametrize("name", sorted(SHARED))
def test_real_configs_reproduce_the_registry_facts(name, tmp_path):
    """The real configs and sentence-transformers files of the plan's models (no weights) give the registry's facts;
    where the real tokenizer.json is there, its special tokens, pad and ordinary ids too."""
    src = shared_models() / SHARED[name]
    if not src.exists():
        pytest.skip(f"{src} not present (set EMBEDPERF_SHARED)")
    folder = tmp_path / SHARED[name]
    shutil.copytree(src, folder)
    real_tokenizer = (folder / "tokenizer.json").exists()
    if not real_tokenizer:  # stand-in tokenizer of the family's layout: the token facts are not compared then
        write_tokenizer(FAMILY_LAYOUT[name], folder, 512)
    derived = derive(folder, name, need_weights=False)
    entry = get_model(name)
    facts = ["family", "pooling", "dense", "normalize", "output_dim", "max_length", "st_max_seq_length",
             "modalities", "image_size"]
    for fact in facts + (["tokens"] if real_tokenizer else []):
        assert getattr(derived, fact) == getattr(entry, fact), fact
    assert entry.prompts.items() <= derived.prompts.items()  # the registry names the query/document pair
    assert derived.architecture("hub") == json.loads((src / "config.json").read_text())


@pytest.mark.parametrize("legacy", [False, True], ids=["st6", "legacy"])
def test_modules_are_read_as_stored(legacy, snapshot):
    folder = snapshot("bert", ("cls", "mean"), ((24, True, "Tanh"), (12, False, "Identity")), True, legacy) \
        if not legacy else snapshot("bert", ("weightedmean",), ((16, True, "Sigmoid"),), True, True)
    spec = derive(folder, "m")
    if legacy:
        assert (spec.pooling, spec.output_dim) == ("weightedmean", 16)
        assert spec.dense == (DenseHead(32, 16, True, "sigmoid"),)
        assert spec.st_max_seq_length == 96 and spec.derived["st_max_seq_length"] == "sentence_bert_config.json"
    else:
        assert spec.pooling == "cls+mean"
        assert spec.dense == (DenseHead(64, 24, True, "tanh"), DenseHead(24, 12, False, "identity"))
        assert spec.output_dim == 12 and spec.normalize
        assert spec.st_max_seq_length == 96 and spec.derived["st_max_seq_length"].startswith("tokenizer_config")
    assert spec.max_length == 128 and spec.tokens.prefix == (2,) and spec.tokens.pad == 0
    assert "dense:bias" in spec.graph_features()


def test_a_folder_without_modules_json_is_what_sentence_transformers_makes_of_it(snapshot, tmp_path):
    folder = tmp_path / "plain"
    shutil.copytree(snapshot("xlm-roberta", ("cls",)), folder)
    for name in ("modules.json", "config_sentence_transformers.json"):
        (folder / name).unlink()
    spec = derive(folder, "plain")
    assert (spec.pooling, spec.normalize, spec.dense) == ("mean", False, ())
    assert spec.max_length == 128  # 130 positions less XLM-R's padding offset


def test_naming_of_local_snapshots(tmp_path):
    hub = tmp_path / "hub" / "models--BAAI--bge-small-en-v1.5" / "snapshots" / "abc123"
    assert folder_name(hub) == "BAAI/bge-small-en-v1.5"
    assert folder_name(tmp_path / "my-finetune") == "my-finetune"
    assert folder_name(tmp_path / "bge-m3") == "local/bge-m3"  # would shadow the registry's BAAI/bge-m3


def test_an_unnamed_snapshot_is_named_from_its_folder_and_found_by_name(snapshot):
    folder = snapshot("gemma3", ("mean",), ((96, False, "Identity"), (64, False, "Identity")))
    spec = resolve(None, "local", str(folder))
    assert spec.name == folder.name and not spec.bundled
    assert get_model(spec.name) is spec  # remembered: code that looks models up by name finds it
    assert spec.architecture("local")["model_type"] == "gemma3_text"


def test_a_registry_name_on_a_different_snapshot_is_refused(snapshot):
    folder = snapshot("bert", ("cls",))
    with pytest.raises(SnapshotError, match="does not hold sentence-transformers/all-MiniLM-L6-v2 as embedperf knows "
                                            "it .*pooling 'cls' in the snapshot, 'mean' in the registry"):
        resolve(MINILM, "local", str(folder))


def _broken(tmp_path: Path, snapshot, edit) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(snapshot("bert", ("mean",), ((24, True, "Tanh"),)), folder)
    edit(folder)
    return folder


def _json_edit(path: str, **changes):
    def edit(folder: Path):
        doc = json.loads((folder / path).read_text())
        doc.update(changes)
        for k, v in changes.items():
            if v is None:
                doc.pop(k)
        (folder / path).write_text(json.dumps(doc))
    return edit


@pytest.mark.parametrize("edit, message", [
    (_json_edit("config.json", model_type="mpnet", architectures=["MPNetForMaskedLM"]),
     r"architecture 'mpnet' \(MPNetForMaskedLM\) is not one embedperf implements; supported: bert, xlm-roberta"),
    (_json_edit("config.json", model_type="gemma3_text", use_bidirectional_attention=False),
     "a causal gemma3_text"),
    (lambda f: (f / "config.json").unlink(), "has no config.json"),
    (lambda f: (f / "config.json").write_text("{not json"), "config.json is not valid JSON"),
    (lambda f: (f / "model.safetensors").unlink(), r"holds no weights \(\*.safetensors or pytorch_model.bin\)"),
    (lambda f: (f / "2_Dense" / "model.safetensors").unlink(), "2_Dense holds no weights"),
    (_json_edit("1_Pooling/config.json", pooling_mode="median"), "unknown pooling mode 'median'"),
    (_json_edit("2_Dense/config.json", activation_function="mymodule.Swish"), "Dense activation 'mymodule.Swish'"),
    (_json_edit("2_Dense/config.json", use_residual=True), "use_residual"),
    (_json_edit("2_Dense/config.json", in_features=99), "Dense takes 99 inputs, the layer before it gives 32"),
    (lambda f: (f / "modules.json").write_text(json.dumps(
        json.loads((f / "modules.json").read_text()) + [{"idx": 9, "name": "9", "path": "9_LSTM",
                                                          "type": "sentence_transformers.models.LSTM"}])),
     "module '9_LSTM' of type 'sentence_transformers.models.LSTM' is not one embedperf implements"),
    (lambda f: [(f / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")], "has no tokenizer"),
], ids=["architecture", "causal-gemma3", "no-config", "bad-config", "no-weights", "no-dense-weights",
        "unknown-pooling", "unknown-activation", "residual", "dense-width", "unknown-module", "no-tokenizer"])
def test_what_embedperf_cannot_run_is_one_clear_line(edit, message, snapshot, tmp_path):
    folder = _broken(tmp_path, snapshot, edit)
    with pytest.raises(SnapshotError, match=message) as err:
        derive(folder, "broken")
    assert "\n" not in str(err.value)


def test_the_registry_still_holds_exactly_the_six_bundled_models():
    assert len(MODELS) == 6 and all(m.bundled for m in MODELS.values())
    assert all(m.graph_features() >= {f"family:{m.family}", f"pooling:{m.pooling}"} for m in MODELS.values())


def test_slow_tokenizer_files_are_converted_once(tmp_path, monkeypatch):
    """A snapshot with vocab.txt but no tokenizer.json gets one converted by transformers (in a subprocess), cached."""
    folder = tmp_path / "slow"
    folder.mkdir()
    src = minilm_folder()
    for name in ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "modules.json",
                 "sentence_bert_config.json"):
        shutil.copy(src / name, folder / name)
    shutil.copytree(src / "1_Pooling", folder / "1_Pooling")
    (folder / "model.safetensors").symlink_to(src / "model.safetensors")
    from embedperf.models.snapshot import tokenizer_file

    monkeypatch.setenv("EMBEDPERF_CACHE", str(tmp_path / "cache"))
    converted = tokenizer_file(folder)
    assert converted.parent.parent == tmp_path / "cache" / "tokenizers" and converted.name == "tokenizer.json"
    spec = derive(folder, "slow")
    assert spec.tokens == get_model(MINILM).tokens
    assert spec.derived["tokens"].startswith("converted: ")


def test_a_run_of_a_snapshot_model_plans_and_resumes(snapshot):
    """spec.build plans a snapshot model by name; a resumed run (a fresh process) resolves it again from run.json."""
    from embedperf.models import registry
    from embedperf.spec import RunSpec, SpecError, build, model_choice

    folder = snapshot("qwen3", ("lasttoken",))
    choice = model_choice(None, "local", str(folder))
    assert choice.name == folder.name
    run = build([choice], "torch", "1", "16,32")
    with pytest.raises(SpecError, match="seq 4096 is longer than"):
        build([choice], "torch", "1", "4096")
    registry._RESOLVED.clear()  # what a new process starts with
    RunSpec.from_dict(json.loads(json.dumps(run.to_dict())))
    assert get_model(choice.name).pooling == "last"
