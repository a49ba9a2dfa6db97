"""embedperf's reference against sentence-transformers' own module stack, built from the same snapshot files.

The embedding embedperf's parity reference computes (derive the spec from the snapshot, materialize, save the
reference artifact, load it back as the reference pass does) must equal what `SentenceTransformer(folder)`
computes from the same files on the same token ids, within 1e-5: a wrong pooling, a dropped Dense bias or
activation, or a missing Normalize shows here, independently of any runtime.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from snapshot_support import POOLING_MODES, TEXT_FAMILIES, snapshot  # noqa: F401 (fixture)

torch = pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers")

TOLERANCE = 1e-5


def embedperf_reference(folder: Path, tmp: Path, modality: str = "text"):
    """The model the reference pass runs: derived spec -> materialize -> reference artifact -> load (eager)."""
    from embedperf.models.embedder import load_reference, save_reference
    from embedperf.models.snapshot import derive
    from embedperf.models.sources import locate, materialize

    spec = derive(folder, folder.name)
    encoder, dense = materialize(spec, locate(spec, "local", str(folder)))
    info = {"model": spec.name, "family": spec.family, "pooling": spec.pooling, "normalize": spec.normalize,
            "dense": spec.dense_names()}
    save_reference(encoder, dense, info, tmp / "reference")
    return spec, load_reference(tmp / "reference", attention="eager", modality=modality)


def st_model(folder: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return st.SentenceTransformer(str(folder), device="cpu")


def text_inputs(spec, batch: int = 4, seq: int = 24):
    """Seeded right-padded rows of varied length in the model's own special tokens."""
    from embedperf.workload.text import make_tokens

    t = make_tokens(spec.tokens, batch, spec.max_length if spec.multimodal else seq, seed=3)
    return torch.from_numpy(t["input_ids"]), torch.from_numpy(t["attention_mask"])


def compare_text(folder: Path, tmp: Path) -> float:
    spec, ours = embedperf_reference(folder, tmp)
    ids, mask = text_inputs(spec)
    features = {"input_ids": ids, "modality": "text"}
    if spec.family != "siglip":  # SigLIP's tokenizer gives no mask and its tower was trained without one
        features["attention_mask"] = mask
    with torch.inference_mode():
        theirs = st_model(folder)(features)["sentence_embedding"]
        mine = ours(input_ids=ids, attention_mask=mask)
    if spec.multimodal:  # a tower's embedding is L2-normalised by definition (what the zero-shot check compares)
        theirs = torch.nn.functional.normalize(theirs, dim=-1)
    assert mine.shape == theirs.shape == (ids.shape[0], spec.output_dim)
    return float((mine - theirs).abs().max())


@pytest.mark.parametrize("pooling", POOLING_MODES)
@pytest.mark.parametrize("family", TEXT_FAMILIES)
def test_every_pooling_mode_of_every_text_family_agrees(family, pooling, snapshot, tmp_path):
    assert compare_text(snapshot(family, (pooling,)), tmp_path) <= TOLERANCE


@pytest.mark.parametrize("family", TEXT_FAMILIES)
@pytest.mark.parametrize("dense", [((24, False, "Identity"),), ((24, True, "Tanh"), (12, True, "ReLU"))],
                         ids=["dense-nobias-identity", "dense-bias-tanh-relu"])
def test_dense_heads_with_and_without_bias_agree(family, dense, snapshot, tmp_path):
    assert compare_text(snapshot(family, ("mean",), dense), tmp_path) <= TOLERANCE


@pytest.mark.parametrize("case", [
    dict(family="bert", pooling=("cls", "mean"), dense=((20, True, "GELU"),)),  # concatenated modes
    dict(family="bert", pooling=("mean",), normalize=False),
    dict(family="bert", pooling=("weightedmean",), dense=((16, True, "Sigmoid"),), legacy=True),
    dict(family="qwen3", pooling=("lasttoken",), legacy=True),
], ids=["cls+mean-gelu", "no-normalize", "legacy-weightedmean-sigmoid", "legacy-lasttoken"])
def test_combinations_and_the_legacy_layout_agree(case, snapshot, tmp_path):
    assert compare_text(snapshot(**case), tmp_path) <= TOLERANCE


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_tower_families_agree_on_text_and_images(family, snapshot, tmp_path):
    folder = snapshot(family)
    assert compare_text(folder, tmp_path / "text") <= TOLERANCE
    _, ours = embedperf_reference(folder, tmp_path / "image", modality="image")
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        theirs = torch.nn.functional.normalize(st_model(folder)({"pixel_values": pixels, "modality": "image"})
                                               ["sentence_embedding"], dim=-1)
        mine = ours(pixel_values=pixels)
    assert float((mine - theirs).abs().max()) <= TOLERANCE


def test_a_dropped_bias_is_caught(snapshot, tmp_path):
    """The check can fail: the same snapshot with its Dense bias zeroed no longer agrees."""
    from safetensors.torch import load_file, save_file

    folder = snapshot("bert", ("mean",), ((24, True, "Tanh"),))
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(folder, broken)
    path = broken / "2_Dense" / "model.safetensors"
    tensors = load_file(str(path))
    spec, ours = embedperf_reference(folder, tmp_path)
    ids, mask = text_inputs(spec)
    tensors["linear.bias"] = torch.zeros_like(tensors["linear.bias"])
    save_file(tensors, str(path))
    with torch.inference_mode():
        theirs = st_model(broken)({"input_ids": ids, "attention_mask": mask})["sentence_embedding"]
        mine = ours(input_ids=ids, attention_mask=mask)
    assert float((mine - theirs).abs().max()) > 1e-3


@pytest.mark.parametrize("modes", [(m,) for m in POOLING_MODES] + [("cls", "max", "mean")])
def test_pool_matches_sentence_transformers_pooling_module(modes):
    """embedder.pool against sentence-transformers' Pooling on the same token states and right-padded mask."""
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    from embedperf.models.embedder import pool
    from embedperf.models.snapshot import ST_POOLING

    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 7, 8, generator=g)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    theirs = Pooling(8, pooling_mode=modes[0] if len(modes) == 1 else modes)(
        {"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"]
    mine = pool(hidden, mask, "+".join(ST_POOLING[m] for m in modes))
    assert torch.allclose(mine, theirs, atol=1e-6, rtol=0)
