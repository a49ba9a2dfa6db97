"""int8 artifacts made from the fp32 exports: ONNX dynamic quantization, NNCF static and weight-only int8.

Runs inside the prepare subprocess (imports onnxruntime, openvino, nncf). The recipes, with the
versions that make them, are in prepare/cache.py: what is built here is exactly what is recorded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from embedperf.models.registry import ModelSpec
from embedperf.models.sources import Located
from embedperf.prepare.cache import CALIBRATION_BATCH, CALIBRATION_ROWS


def quantize_onnx(source: Path, out: Path, recipe: dict) -> None:
    """Dynamic int8 quantization of an ONNX graph's MatMul and Gather weights (recipe: cache.recipe('onnx:int8'))."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.parent.mkdir(parents=True, exist_ok=True)
    # a graph whose fp32 weights were over protobuf's 2 GB limit keeps its int8 ones beside it too
    external = any(p.suffix == ".data" for p in source.parent.iterdir())
    quantize_dynamic(source, out, op_types_to_quantize=recipe["op_types"], per_channel=recipe["per_channel"],
                     reduce_range=recipe["reduce_range"], weight_type=getattr(QuantType, recipe["weight_type"]),
                     use_external_data_format=external)


def calibration_feeds(spec: ModelSpec, located: Located, modality: str) -> list[dict[str, np.ndarray]]:
    """What NNCF calibrates a graph on: batches of the model's own kind of input, disjoint from the accuracy corpus."""
    if modality == "image":
        from embedperf.workload.image import make_pixels

        pixels, _, _ = make_pixels(spec, CALIBRATION_ROWS // CALIBRATION_BATCH, seed=1)
        return [{"pixel_values": pixels[i:i + 4]} for i in range(0, len(pixels), 4)]
    from embedperf.workload.sentences import calibration_batches

    return calibration_batches(spec, located.source, located.folder, rows=CALIBRATION_ROWS, batch=CALIBRATION_BATCH)


def _declared(model, feeds: list[dict]) -> list[dict]:
    """Each feed cut to the inputs the graph declares (SigLIP's text tower takes no attention mask)."""
    names = [next((n for n in ("input_ids", "attention_mask", "pixel_values") if n in p.get_names()),
                  p.get_any_name()) for p in model.inputs]
    return [{n: feed[n] for n in names} for feed in feeds]


def quantize_openvino_static(source: Path, out: Path, feeds: list[dict], recipe: dict) -> None:
    """NNCF post-training static int8 quantization of an fp32 IR, calibrated on `feeds`."""
    import nncf
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.WARNING)
    model = ov.Core().read_model(source)
    data = _declared(model, feeds)
    quantized = nncf.quantize(model, nncf.Dataset(data), model_type=nncf.ModelType.TRANSFORMER,
                              preset=nncf.QuantizationPreset(recipe["preset"]), subset_size=len(data))
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out), compress_to_fp16=False)


def compress_openvino_weights(source: Path, out: Path, recipe: dict) -> None:
    """NNCF int8 weight compression of an fp32 IR (no calibration data)."""
    import nncf
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.WARNING)
    model = ov.Core().read_model(source)
    compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode(recipe["mode"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(compressed, str(out), compress_to_fp16=False)
