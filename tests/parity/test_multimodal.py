"""CLIP and SigLIP: both towers of both models on tiny configs, in every runtime, against the reference."""

import json

import pytest

from conftest import require_runtime

REAL_RUNTIMES = ["torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust", "candle", "openvino"]
MODELS = ["openai/clip-vit-base-patch16", "google/siglip-base-patch16-224"]


def _tiny(matrix, model):
    return matrix(model, "tiny", batch="1,3", seq=None)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("runtime", REAL_RUNTIMES)
def test_both_towers_match_the_reference(model, runtime, matrix):
    require_runtime(runtime)
    _, cells = _tiny(matrix, model)
    mine = [c for c in cells if c["runtime"] == runtime]
    assert sorted((c["modality"], c["batch"]) for c in mine) == [("image", 1), ("image", 3), ("text", 1), ("text", 3)]
    for cell in mine:
        assert cell["status"] == "ok", cell["reason"]
        assert cell["min_cosine"] >= 0.9999, cell
        assert cell["seq"] == (224 if cell["modality"] == "image" else (77 if "clip" in model else 64))
        assert cell["zero_shot_max_abs_prob_diff"] is not None and cell["zero_shot_max_abs_prob_diff"] <= 1e-4
        assert cell["flops"] and cell["flops"] > 0


@pytest.mark.parametrize("model", MODELS)
def test_tower_cells_say_what_they_ran(model, matrix):
    run_dir, cells = _tiny(matrix, model)
    image = next(c for c in cells if c["modality"] == "image" and c["runtime"] == "onnxruntime-python")
    assert image["preprocess_ms_per_image"] > 0  # measured apart from the model's time
    doc = json.loads(next(run_dir.glob("*__onnxruntime-python__*__image__b3__s224.json")).read_text())
    assert doc["spec"]["workload"]["kind"] == "images"
    assert doc["spec"]["workload"]["images"][0].startswith("skimage:")
    assert doc["zero_shot"]["rule"] == ("softmax" if "clip" in model else "sigmoid")
    assert doc["zero_shot"]["captions"] == 8 and doc["zero_shot"]["images"] == 3  # a fixed caption set
    one = json.loads(next(run_dir.glob("*__onnxruntime-python__*__image__b1__s224.json")).read_text())
    # a batch of one image is scored against the eight captions too: before, one caption against one image
    # gave a probability of 1 whatever the runtime computed
    assert one["zero_shot"]["captions"] == 8 and one["zero_shot"]["images"] == 1
    assert one["zero_shot"]["max_abs_logit_diff"] > 0  # logits were compared, not a constant
    # an image tower's graph is its own file, smaller than the two towers together
    assert 0 < doc["model"]["size_on_disk_bytes"]
    text = json.loads(next(run_dir.glob("*__onnxruntime-python__*__text__b3__s*.json")).read_text())
    assert text["model"]["size_on_disk_bytes"] != doc["model"]["size_on_disk_bytes"]


def test_the_reference_rows_differ(matrix):
    for model in MODELS:
        _, cells = _tiny(matrix, model)
        spreads = [c["reference_spread"] for c in cells if c["reference_spread"] is not None]
        assert spreads and max(spreads) < 0.99, (model, spreads)
