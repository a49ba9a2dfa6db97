"""int8 artifacts in the prepare cache: named by format, built beside the fp32 ones, rebuilt when their recipe changes."""

from __future__ import annotations

import json

import onnx
import pytest

from embedperf.prepare import PrepareError
from embedperf.prepare.cache import format_for, read_manifest, recipe, recipe_id
from precision_support import prepare

MODEL = "BAAI/bge-m3"


def test_format_for_names_the_artifact_a_runner_needs():
    assert format_for("onnx", "int8") == "onnx:int8" and format_for("openvino", "int8") == "openvino:int8"
    assert format_for("reference", "int8") == "reference"  # torch quantizes at load
    assert format_for("onnx", "bf16") == "onnx" and format_for("openvino", "fp32") == "openvino"


def test_onnx_int8_recipe_follows_the_cpu():
    vnni, plain = recipe("onnx:int8", ["avx2", "avx512_vnni"]), recipe("onnx:int8", ["avx2", "fma"])
    assert not vnni["reduce_range"] and plain["reduce_range"]  # 7-bit weights without VNNI (vpmaddubsw saturation)
    assert recipe("onnx") is None and recipe_id("openvino") is None


def test_onnx_int8_is_built_once_beside_the_fp32_graph_and_rebuilt_on_a_new_recipe(tmp_path):
    prepared = prepare(MODEL, "tiny", {"onnx:int8"}, tmp_path)
    int8, fp32 = prepared.artifact_path("onnx", precision="int8"), prepared.artifact_path("onnx")
    assert int8 == prepared.folder / "onnx-int8" / "model.onnx" and fp32.exists()
    graph = onnx.load(str(int8))
    ops = {n.op_type for n in graph.graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
    # the embedding tables are stored in 8 bits too (Gather quantized), not only the MatMul weights
    eight_bit = {t.name for t in graph.graph.initializer if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    gathered = [n.input[0] for n in graph.graph.node if n.op_type == "Gather"]
    assert any(name.startswith("encoder.embeddings.word_embeddings") and name in eight_bit for name in gathered)
    entry = prepared.manifest["artifacts"]["onnx:int8"]
    assert entry["recipe_id"] == recipe_id("onnx:int8") and entry["precision"] == "int8"
    assert prepared.artifact_sha256("onnx", precision="int8") == entry["files"]["model.onnx"]
    assert prepared.size_bytes("onnx", precision="int8") < prepared.size_bytes("onnx")

    said = []
    from embedperf.models.registry import get_model
    from embedperf.models.sources import locate
    from embedperf.prepare import ensure_prepared

    spec = get_model(MODEL)
    ensure_prepared(spec, locate(spec, "tiny"), {"onnx:int8"}, tmp_path, 2, say=said.append)
    assert said and "reusing" in said[0]
    # a recipe (or quantizer version) that differs from the stored one makes the artifact missing: rebuilt alone
    path = prepared.folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["artifacts"]["onnx:int8"]["recipe_id"] = "an-older-recipe"
    path.write_text(json.dumps(manifest))
    said.clear()
    again = ensure_prepared(spec, locate(spec, "tiny"), {"onnx:int8"}, tmp_path, 2, say=said.append)
    assert "building onnx:int8 for" in said[0]
    assert read_manifest(again.folder)["artifacts"]["onnx:int8"]["recipe_id"] == recipe_id("onnx:int8")


def test_unknown_formats_are_refused(tmp_path):
    with pytest.raises(PrepareError, match="unknown artifact format"):
        prepare(MODEL, "tiny", {"onnx:int4"}, tmp_path)
