"""The analytic FLOP and weight counts against PyTorch's own counter on the real transformers models."""

import pytest

from embedperf.measure.flops import attended_pairs, flops_per_call, parameter_counts, tower_parameters, weight_bytes
from embedperf.models.registry import MODELS

BATCH, SEQ = 2, 24
TEXT_MODELS = [n for n, m in MODELS.items() if not m.multimodal]
TOWERS = [(n, m) for n, spec in MODELS.items() if spec.multimodal for m in spec.modalities]


def _tiny_model(spec):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(**spec.architecture("tiny"))
    torch.manual_seed(0)
    kwargs = {"add_pooling_layer": False} if spec.family in ("bert", "xlm-roberta") else {}
    encoder = transformers.AutoModel.from_config(config, attn_implementation="eager", dtype=torch.float32, **kwargs)
    heads = [torch.nn.Linear(h.in_features, h.out_features, bias=False) for h in spec.heads("tiny")]
    return torch, encoder.eval(), heads


def _inputs(torch, spec):
    high = spec.tiny_tokens.regular[1]
    ids = torch.randint(spec.tiny_tokens.regular[0], high, (BATCH, SEQ))
    mask = torch.ones(BATCH, SEQ, dtype=torch.long)
    mask[1, SEQ // 2:] = 0  # padding: still computed, still counted
    return ids, mask


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_flops_match_flop_counter_within_one_percent(name):
    spec = MODELS[name]
    torch, encoder, heads = _tiny_model(spec)
    from torch.utils.flop_counter import FlopCounterMode

    ids, mask = _inputs(torch, spec)
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            x = hidden[:, 0]  # pooling is not a matmul; which row is pooled does not change the count
            for layer in heads:
                x = layer(x)
    measured = counter.get_total_flops()
    ours = flops_per_call(spec, "tiny", BATCH, SEQ)
    assert ours["flops"] == sum(ours["breakdown"].values())
    assert measured > 0
    # the counter sees every full seq × seq square the eager graph multiplies; we count the pairs the
    # mask lets attend and say how much the full squares add
    assert abs(ours["flops"] + ours["unneeded_attention_flops"] - measured) / measured < 0.01, (ours, measured)
    expected = {"bert": "full", "xlm-roberta": "full", "qwen3": "causal", "gemma3": "full + sliding window"}
    assert ours["attention"] == expected[spec.family]
    assert (ours["unneeded_attention_flops"] > 0) == (spec.family in ("qwen3", "gemma3"))  # gemma tiny: window 8 < 24


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_weight_bytes_match_the_model_parameters(name):
    spec = MODELS[name]
    torch, encoder, heads = _tiny_model(spec)
    tables = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
              "embed_tokens.weight")
    embedding = sum(p.numel() for n, p in encoder.named_parameters() if n.endswith(tables))
    total = sum(p.numel() for p in encoder.parameters())
    dense = sum(p.numel() for layer in heads for p in layer.parameters())
    counts = parameter_counts(spec, "tiny")
    assert counts["embedding"] == embedding
    assert weight_bytes(spec, "tiny") == 4 * (total - embedding + dense)


def test_attended_pairs_by_hand():
    assert attended_pairs(4) == 16
    assert attended_pairs(4, causal=True) == 10  # 1 + 2 + 3 + 4
    assert attended_pairs(5, window=2) == 13  # |i − j| < 2: 5 on the diagonal + 4 + 4 beside it
    assert attended_pairs(5, causal=True, window=2) == 9  # 1 + 2 + 2 + 2 + 2
    assert attended_pairs(5, window=8) == 25 and attended_pairs(5, causal=True, window=8) == 15


def test_gemma_sliding_layers_count_their_band_and_say_so():
    spec = MODELS["google/embeddinggemma-300m"]
    f = flops_per_call(spec, "twin", 1, 1024)
    assert f["sliding_window_layers"] == 20
    assert "band |i − j| < 512" in f["attention_note"]
    band = 1024 * 1024 - 512 * 513  # |i − j| >= 512: d = 512 … 1023, (1024 − d) pairs each way
    # 4 global layers over the full square, 20 local ones over the band; 3 heads × 256 dims × 2 FLOPs
    assert f["breakdown"]["attn_scores"] == 2 * 3 * 256 * (4 * 1024 * 1024 + 20 * band)
    assert f["breakdown"]["attn_values"] == f["breakdown"]["attn_scores"]
    assert f["unneeded_attention_flops"] == 2 * 2 * 3 * 256 * 20 * (1024 * 1024 - band)
    short = flops_per_call(spec, "twin", 1, 512)  # within the window the band is the whole square
    assert short["unneeded_attention_flops"] == 0 and "whole sequence" in short["attention_note"]


def test_qwen3_counts_the_causal_half():
    spec = MODELS["Qwen/Qwen3-Embedding-0.6B"]
    f = flops_per_call(spec, "twin", 1, 512)
    assert f["attention"] == "causal" and "lower triangle" in f["attention_note"]
    # 28 layers × 16 query heads × 128 dims × 2 FLOPs over 512·513/2 pairs
    assert f["breakdown"]["attn_scores"] == 28 * 2 * 16 * 128 * (512 * 513 // 2)


def test_full_size_counts_by_hand():
    spec = MODELS["sentence-transformers/all-MiniLM-L6-v2"]
    f = flops_per_call(spec, "twin", 8, 128)
    t = 8 * 128
    # 6 layers, H 384, 12 heads, I 1536: 4 projections + 2 MLP matrices + 2 attention products
    per_layer = 4 * 2 * t * 384 * 384 + 2 * 2 * t * 384 * 1536 + 2 * 2 * 8 * 128 * 128 * 384
    assert f["flops"] == 6 * per_layer
    # 22.7 M parameters less the 30522 × 384 word table and the 512 + 2 position/type rows: 10.65 M
    assert weight_bytes(spec, "twin") == 4 * 10_647_552
    assert flops_per_call(spec, "twin", 16, 128)["flops"] == 2 * f["flops"]


def test_bad_shape_is_refused():
    with pytest.raises(ValueError):
        flops_per_call(MODELS["BAAI/bge-m3"], "tiny", 0, 16)


def _tower(name, modality):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from embedperf.models.embedder import TOWER_CLASSES, TowerModel

    spec = MODELS[name]
    config = transformers.AutoConfig.for_model(**spec.architecture("tiny"))
    torch.manual_seed(0)
    full = transformers.AutoModel.from_config(config, attn_implementation="eager", dtype=torch.float32)
    cls = getattr(transformers, TOWER_CLASSES[(spec.family, modality)])
    sub = config.text_config if modality == "text" else config.vision_config
    if spec.family == "clip":
        sub.projection_dim = config.projection_dim
    tower = cls(sub)
    tower.load_state_dict(full.state_dict(), strict=False)
    return torch, spec, TowerModel(tower.eval(), spec.family, modality)


@pytest.mark.parametrize("name,modality", TOWERS)
def test_tower_flops_match_flop_counter_within_one_percent(name, modality):
    torch, spec, model = _tower(name, modality)
    from torch.utils.flop_counter import FlopCounterMode

    seq = spec.seq_for(modality, "tiny")
    if modality == "image":
        inputs = {"pixel_values": torch.randn(BATCH, 3, seq, seq)}
    else:
        inputs = {"input_ids": torch.randint(3, 1000, (BATCH, seq)), "attention_mask": torch.ones(BATCH, seq, dtype=torch.long)}
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(**inputs)
    measured = counter.get_total_flops()
    ours = flops_per_call(spec, "tiny", BATCH, seq, modality)
    assert ours["flops"] == sum(ours["breakdown"].values())
    assert abs(ours["flops"] + ours["unneeded_attention_flops"] - measured) / measured < 0.01, (ours, measured)
    assert (ours["attention"] == "causal") == (spec.family == "clip" and modality == "text")  # CLIP text is causal


@pytest.mark.parametrize("name,modality", TOWERS)
def test_tower_parameters_match_the_model(name, modality):
    torch, spec, model = _tower(name, modality)
    counts = tower_parameters(spec, "tiny", modality)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())


def test_full_size_towers_add_up_to_the_published_parameter_counts():
    # CLIP ViT-B/16 149.6M (incl. logit_scale), SigLIP base 203.2M (incl. logit_scale and logit_bias)
    for name, published in (("openai/clip-vit-base-patch16", 149_620_737), ("google/siglip-base-patch16-224", 203_155_970)):
        spec = MODELS[name]
        ours = sum(sum(tower_parameters(spec, "twin", m).values()) for m in spec.modalities)
        scalars = 1 if spec.family == "clip" else 2
        assert ours + scalars == published
