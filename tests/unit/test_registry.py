"""The registries: models match the real configs; runtimes are one list."""

import json

import pytest

from conftest import shared_models
from embedperf.models.registry import MODELS, get_model, sources_for
from embedperf.runners.registry import ALL, RUNTIMES, command, get_runtime

SHARED = {
    "google/embeddinggemma-300m": "google__embeddinggemma-300m",
    "Qwen/Qwen3-Embedding-0.6B": "Qwen__Qwen3-Embedding-0.6B",
    "BAAI/bge-m3": "BAAI__bge-m3",
}
ARCH_KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
             "intermediate_size", "vocab_size", "max_position_embeddings", "sliding_window", "layer_types",
             "use_bidirectional_attention", "rope_theta", "rope_local_base_freq", "query_pre_attn_scalar",
             "rms_norm_eps", "layer_norm_eps", "hidden_act", "hidden_activation", "pad_token_id", "type_vocab_size"]


@pytest.mark.parametrize("name", sorted(SHARED))
def test_bundled_twin_config_equals_the_real_architecture(name):
    real_path = shared_models() / SHARED[name] / "config.json"
    if not real_path.exists():
        pytest.skip(f"{real_path} not present (set EMBEDPERF_SHARED)")
    real = json.loads(real_path.read_text())
    twin = get_model(name).architecture("twin")
    for key in ARCH_KEYS:
        if key in real:
            assert twin.get(key) == real[key], f"{name}: {key} twin={twin.get(key)} real={real[key]}"


@pytest.mark.parametrize("name", sorted(SHARED))
def test_registry_heads_and_pooling_match_sentence_transformers_files(name):
    folder = shared_models() / SHARED[name]
    if not folder.exists():
        pytest.skip("shared models not present")
    spec = get_model(name)
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    mode = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "last": "pooling_mode_lasttoken"}
    assert pooling[mode[spec.pooling]] is True
    dense_dirs = sorted(p.name for p in folder.glob("*_Dense"))
    assert len(dense_dirs) == len(spec.dense)
    for head, sub in zip(spec.dense, dense_dirs):
        cfg = json.loads((folder / sub / "config.json").read_text())
        assert (cfg["in_features"], cfg["out_features"], cfg["bias"]) == (head.in_features, head.out_features, False)


MULTIMODAL_SHARED = {"openai/clip-vit-base-patch16": "openai__clip-vit-base-patch16",
                     "google/siglip-base-patch16-224": "google__siglip-base-patch16-224"}
TOWER_KEYS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "hidden_act",
              "layer_norm_eps", "vocab_size", "max_position_embeddings", "image_size", "patch_size", "num_channels",
              "vision_use_head", "projection_dim"]


@pytest.mark.parametrize("name", sorted(MULTIMODAL_SHARED))
def test_bundled_multimodal_config_equals_the_real_architecture(name):
    """Both towers as transformers reads them (defaults filled: SigLIP's file names few fields)."""
    transformers = pytest.importorskip("transformers")
    real_path = shared_models() / MULTIMODAL_SHARED[name] / "config.json"
    if not real_path.exists():
        pytest.skip(f"{real_path} not present (set EMBEDPERF_SHARED)")
    real = transformers.AutoConfig.for_model(**json.loads(real_path.read_text()))
    ours = transformers.AutoConfig.for_model(**get_model(name).architecture("twin"))
    assert type(real) is type(ours)
    assert getattr(real, "projection_dim", None) == getattr(ours, "projection_dim", None)
    for tower in ("text_config", "vision_config"):
        for key in TOWER_KEYS:
            a, b = getattr(getattr(real, tower), key, None), getattr(getattr(ours, tower), key, None)
            assert a == b, f"{name} {tower}.{key}: real {a} ours {b}"
    spec = get_model(name)
    assert spec.embedding_dim("twin") == (real.projection_dim if spec.family == "clip" else real.text_config.hidden_size)
    assert spec.length_limit("twin") == real.text_config.max_position_embeddings
    assert spec.image_size == real.vision_config.image_size


def test_multimodal_token_schemes_follow_the_real_tokenizers():
    folder = shared_models() / "openai__clip-vit-base-patch16"
    if not folder.exists():
        pytest.skip("shared models not present")
    clip = get_model("openai/clip-vit-base-patch16").tokens
    vocab = json.loads((folder / "vocab.json").read_text())
    assert (vocab["<|startoftext|>"], vocab["<|endoftext|>"]) == (clip.prefix[0], clip.suffix[0]) == (49406, 49407)
    assert clip.pad == 49407 and clip.regular[1] <= 49406  # pad = EOS; ordinary ids below both
    siglip = json.loads((shared_models() / "google__siglip-base-patch16-224" / "tokenizer_config.json").read_text())
    eos = next(int(k) for k, v in siglip["added_tokens_decoder"].items() if v["content"] == siglip["eos_token"])
    s = get_model("google/siglip-base-patch16-224").tokens
    assert s.suffix == (eos,) and s.pad == eos and s.prefix == ()


def test_tiny_configs_exercise_every_path_of_their_family():
    gemma = get_model("google/embeddinggemma-300m").architecture("tiny")
    assert gemma["use_bidirectional_attention"] is True
    assert gemma["sliding_window"] < 24  # shorter than the sequences the parity tests use
    assert "sliding_attention" in gemma["layer_types"] and "full_attention" in gemma["layer_types"]
    assert gemma["num_key_value_heads"] < gemma["num_attention_heads"]
    qwen = get_model("Qwen/Qwen3-Embedding-0.6B").architecture("tiny")
    assert qwen["num_key_value_heads"] < qwen["num_attention_heads"]
    for spec in MODELS.values():
        tokens = spec.token_scheme("tiny")
        arch = spec.architecture("tiny")
        vocab = (arch["text_config"] if spec.multimodal else arch)["vocab_size"]
        ids = [*tokens.prefix, *tokens.suffix, tokens.pad, tokens.regular[1] - 1]
        assert max(ids) < vocab, spec.name


def test_special_tokens_stay_out_of_the_regular_range():
    for spec in MODELS.values():
        for source in ("twin", "tiny"):
            t = spec.token_scheme(source)
            low, high = t.regular
            for special in (*t.prefix, *t.suffix, t.pad):
                assert not (low <= special < high), (spec.name, source, special)


def test_lookup_by_short_name_and_sources():
    assert get_model("bge-m3").name == "BAAI/bge-m3"
    assert "package" in sources_for(get_model("all-MiniLM-L6-v2"))
    assert "package" not in sources_for(get_model("bge-m3"))


def test_runtime_registry_is_the_one_list(tmp_path):
    assert set(ALL) == {"torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust", "candle", "openvino"}
    assert all(RUNTIMES[n].is_null for n in ("null", "null-rust", "null-cpp"))
    cmd = command(get_runtime("torch"), tmp_path / "r.json", tmp_path / "o.json")
    assert cmd[1:3] == ["-m", "embedperf.runners.torch"] and cmd[-2:] == ["--result", str(tmp_path / "o.json")]
    assert command(get_runtime("candle"), tmp_path / "r", tmp_path / "o")[0].endswith("embedperf-candle")


def test_importing_the_registries_imports_no_framework():
    import subprocess
    import sys

    code = ("import sys, embedperf.cli, embedperf.orchestrator, embedperf.runners.registry, embedperf.models.registry;"
            "print(sorted(m for m in ('torch','onnxruntime','openvino','transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
