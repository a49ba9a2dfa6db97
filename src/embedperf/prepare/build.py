"""Build a model's artifacts in a subprocess: reference safetensors, ONNX, OpenVINO IR and their int8 forms.

Run as `python -m embedperf.prepare.build JOB.json`; imports torch, so the
orchestrator never does. Each artifact is written to a temporary folder and moved
into place whole, so an interrupted export never looks finished.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from embedperf.models.registry import MODE_OUTPUTS, TOKEN_HEAD_FILES
from embedperf.models.resolve import resolve
from embedperf.models.sources import Located, SourceError, materialize, materialize_token_heads, sha256_file
from embedperf.prepare.cache import (FORMAT_DIRS, MANIFEST, MODE_FORMATS, QUANTIZED, base_format, exporter_versions,
                                     is_current, mode_of, recipe, recipe_id)

ONNX_OPSET = 18
EXTERNAL_DATA_BYTES = 2_000_000_000  # protobuf's 2 GB limit: larger graphs keep weights beside them


def log(msg: str) -> None:
    print(f"[prepare] {msg}", flush=True)


def _sample_inputs(vocab_low: int, vocab_high: int):
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(vocab_low, vocab_high, (2, 16), generator=g)
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 11:] = 0  # a padded row, so the traced graph keeps the padding path
    return ids, mask


def export_onnx(model, spec, source: str, out: Path, param_bytes: int) -> None:
    """The embedding graph with dynamic batch and seq; its outputs are the model's (OUTPUT_NAMES of
    model.outputs: sentence_embedding, and for an output mode token_weights and/or colbert_vectors)."""
    import torch

    from embedperf.models.embedder import OUTPUT_NAMES

    low, high = spec.token_scheme(source).regular
    ids, mask = _sample_inputs(low, high)
    batch = torch.export.Dim("batch", min=1, max=1024)
    seq = torch.export.Dim("seq", min=2, max=spec.length_limit(source))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    # The dynamo exporter: the TorchScript one fails on Gemma3's masks in transformers 5.
    program = torch.onnx.export(
        model, (ids, mask), dynamo=True, input_names=["input_ids", "attention_mask"],
        # `embedding` collides with an internal name
        output_names=[OUTPUT_NAMES[o] for o in getattr(model, "outputs", ("dense",))],
        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
        opset_version=ONNX_OPSET, optimize=True, verbose=False,
    )
    program.save(str(path), external_data=param_bytes > EXTERNAL_DATA_BYTES)


def export_tower_onnx(tower, spec, source: str, modality: str, out: Path) -> None:
    """One tower of CLIP/SigLIP: text (fixed length, dynamic batch) or image (pixel_values, dynamic batch)."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    g = torch.Generator().manual_seed(0)
    if modality == "image":
        side = spec.image_size
        kwargs = {"pixel_values": torch.randn(2, 3, side, side, generator=g)}
    else:
        seq = spec.length_limit(source)
        low, high = spec.token_scheme(source).regular
        ids = torch.randint(low, high, (2, seq), generator=g)
        ids[:, -1] = spec.token_scheme(source).suffix[0]
        ids[1, seq // 2] = spec.token_scheme(source).suffix[0]
        kwargs = {"input_ids": ids}
        if spec.family == "clip":
            mask = torch.ones(2, seq, dtype=torch.long)
            mask[1, seq // 2 + 1:] = 0  # a padded row, so the graph keeps the padding path
            kwargs["attention_mask"] = mask
    out.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        tower, (), kwargs=kwargs, dynamo=True, input_names=list(kwargs), output_names=["sentence_embedding"],
        dynamic_shapes={name: {0: batch} for name in kwargs}, opset_version=ONNX_OPSET, optimize=True,
        verbose=False,
    )
    program.save(str(out / "model.onnx"))


def export_openvino(onnx_path: Path, out: Path) -> None:
    import openvino as ov

    out.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(onnx_path))
    # save_model compresses weights to fp16 unless told not to: the IR must stay fp32.
    ov.save_model(model, str(out / "model.xml"), compress_to_fp16=False)


def build_quantized(fmt: str, spec, located, folder: Path, finish) -> None:
    """One int8 artifact (per tower for CLIP/SigLIP) from its fp32 artifact, recipe recorded beside its files."""
    from embedperf.prepare import quantize

    t1 = time.perf_counter()
    how = recipe(fmt)
    base = base_format(fmt)
    tmp = folder / (FORMAT_DIRS[fmt] + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    towers = list(spec.modalities) if spec.multimodal else [None]
    for modality in towers:
        sub = Path(modality) if modality else Path()
        if fmt == "onnx:int8":
            quantize.quantize_onnx(folder / base / sub / "model.onnx", tmp / sub / "model.onnx", how)
        elif fmt == "openvino:int8":
            feeds = quantize.calibration_feeds(spec, located, modality or "text")
            quantize.quantize_openvino_static(folder / base / sub / "model.xml", tmp / sub / "model.xml", feeds, how)
        else:
            quantize.compress_openvino_weights(folder / base / sub / "model.xml", tmp / sub / "model.xml", how)
    entry = {"format": base, "precision": "int8", "recipe": how, "recipe_id": recipe_id(fmt)}
    if spec.multimodal:
        entry["towers"] = towers
    finish(fmt, tmp, folder / FORMAT_DIRS[fmt], entry)
    log(f"built {fmt} ({how['tool']}) in {time.perf_counter() - t1:.1f}s")


def export_towers(spec, located, folder: Path, wanted: set, artifacts: dict, finish) -> None:
    """ONNX and OpenVINO of each tower, loaded back from the reference folder as the torch runner loads it."""
    from embedperf.models.embedder import load_tower

    if ({"onnx", "openvino"} & wanted) and "onnx" not in artifacts:
        t1 = time.perf_counter()
        tmp = folder / "onnx.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for modality in spec.modalities:
            tower = load_tower(folder / "reference", spec.family, modality, attention="eager", normalize=spec.normalize)
            export_tower_onnx(tower, spec, located.source, modality, tmp / modality)
        finish("onnx", tmp, folder / "onnx", {"format": "onnx", "opset": ONNX_OPSET, "exporter": "torch.onnx dynamo",
                                              "towers": list(spec.modalities)})
        log(f"exported ONNX ({', '.join(spec.modalities)} towers) in {time.perf_counter() - t1:.1f}s")
    if "openvino" in wanted and "openvino" not in artifacts:
        t1 = time.perf_counter()
        tmp = folder / "openvino.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for modality in spec.modalities:
            export_openvino(folder / "onnx" / modality / "model.onnx", tmp / modality)
        finish("openvino", tmp, folder / "openvino", {"format": "openvino ir", "weights": "fp32",
                                                      "towers": list(spec.modalities)})
        log(f"converted to OpenVINO IR (fp32) in {time.perf_counter() - t1:.1f}s")


def export_modes(spec, located, encoder, dense, token_heads: dict, folder: Path, wanted: set, artifacts: dict,
                 finish, params: int) -> None:
    """The ONNX and OpenVINO graphs of each output mode asked (onnx+sparse, openvino+colbert, ...): the same
    encoder with the mode's heads, one graph per mode (docs/outputs.md)."""
    from embedperf.models.embedder import EmbeddingModel

    modes = sorted({mode_of(f) for f in wanted if f in MODE_FORMATS})
    for mode in modes:
        onnx_fmt, ov_fmt = f"onnx+{mode}", f"openvino+{mode}"
        missing = [o for o in MODE_OUTPUTS[mode] if o != "dense" and o not in token_heads]
        if missing:
            raise SourceError(f"{spec.name} ({located.source}) has no {' or '.join(missing)} head: its snapshot "
                              f"lacks {', '.join(TOKEN_HEAD_FILES[o] for o in missing)}")
        if onnx_fmt not in artifacts:
            t1 = time.perf_counter()
            model = EmbeddingModel(encoder, spec.pooling, dense, spec.normalize, token_heads,
                                   MODE_OUTPUTS[mode]).eval()
            tmp = folder / (FORMAT_DIRS[onnx_fmt] + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            export_onnx(model, spec, located.source, tmp, params * 4)
            finish(onnx_fmt, tmp, folder / FORMAT_DIRS[onnx_fmt],
                   {"format": "onnx", "opset": ONNX_OPSET, "exporter": "torch.onnx dynamo",
                    "outputs": list(MODE_OUTPUTS[mode])})
            log(f"exported ONNX of output mode {mode} in {time.perf_counter() - t1:.1f}s")
        if ov_fmt in wanted and ov_fmt not in artifacts:
            t1 = time.perf_counter()
            tmp = folder / (FORMAT_DIRS[ov_fmt] + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            export_openvino(folder / FORMAT_DIRS[onnx_fmt] / "model.onnx", tmp)
            finish(ov_fmt, tmp, folder / FORMAT_DIRS[ov_fmt], {"format": "openvino ir", "weights": "fp32",
                                                             "outputs": list(MODE_OUTPUTS[mode])})
            log(f"converted output mode {mode} to OpenVINO IR (fp32) in {time.perf_counter() - t1:.1f}s")


def build(job: dict) -> int:
    import torch

    from embedperf.models.embedder import EmbeddingModel, save_reference

    torch.set_num_threads(job["threads"])
    # hub and local: the spec read from the snapshot (the registry's, where the snapshot is a registry model)
    from_snapshot = job["source"] in ("hub", "local")
    spec = resolve(job["model"], "local" if from_snapshot else job["source"], job["folder"] if from_snapshot else None)
    located = Located(job["source"], Path(job["folder"]) if job["folder"] else None, job["identity"], job["weights"])
    folder = Path(job["out"])
    folder.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((folder / MANIFEST).read_text()) if (folder / MANIFEST).exists() else {}
    artifacts = manifest.setdefault("artifacts", {})

    t0 = time.perf_counter()
    log(f"building {spec.name} from {located.source} ({located.weights} weights)")
    encoder, dense = materialize(spec, located)
    token_heads = materialize_token_heads(spec, located)
    params = sum(p.numel() for p in encoder.parameters()) + sum(
        t.numel() for layer in [*dense, *token_heads.values()] for t in (layer["weight"], layer["bias"])
        if t is not None)
    log(f"materialized {params / 1e6:.1f}M parameters in {time.perf_counter() - t0:.1f}s")

    def finish(fmt: str, tmp: Path, final: Path, entry: dict) -> None:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        entry["files"] = {str(p.relative_to(final)): sha256_file(p) for p in sorted(final.rglob("*")) if p.is_file()}
        artifacts[fmt] = entry

    info = {"model": spec.name, "family": spec.family, "pooling": spec.pooling, "normalize": spec.normalize,
            "dense": spec.dense_names(), "output_dim": spec.embedding_dim(located.source), "weights": located.weights}
    if "reference" not in artifacts:
        tmp = folder / "reference.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_reference(encoder, dense, info, tmp, token_heads)
        finish("reference", tmp, folder / "reference", {"format": "safetensors (transformers names) + heads"})
        log("wrote reference safetensors")

    wanted = {base_format(f) for f in job["formats"]}  # the fp32 artifacts the requested formats come from
    if spec.multimodal:
        export_towers(spec, located, folder, wanted, artifacts, finish)
        manifest["towers"] = list(spec.modalities)
        # the zero-shot check needs the model's own logit scale (and SigLIP's bias)
        manifest["logits"] = {"scale": float(encoder.logit_scale.exp()),
                              "bias": float(encoder.logit_bias) if hasattr(encoder, "logit_bias") else None,
                              "rule": "softmax" if spec.family == "clip" else "sigmoid"}
    model = None if spec.multimodal else EmbeddingModel(encoder, spec.pooling, dense, spec.normalize).eval()
    if model is not None and ({"onnx", "openvino"} & wanted) and "onnx" not in artifacts:
        t1 = time.perf_counter()
        tmp = folder / "onnx.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        export_onnx(model, spec, located.source, tmp, params * 4)
        finish("onnx", tmp, folder / "onnx", {"format": "onnx", "opset": ONNX_OPSET, "exporter": "torch.onnx dynamo"})
        log(f"exported ONNX in {time.perf_counter() - t1:.1f}s")
    if model is not None and "openvino" in wanted and "openvino" not in artifacts:
        t1 = time.perf_counter()
        tmp = folder / "openvino.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        export_openvino(folder / "onnx" / "model.onnx", tmp)
        finish("openvino", tmp, folder / "openvino", {"format": "openvino ir", "weights": "fp32"})
        log(f"converted to OpenVINO IR (fp32) in {time.perf_counter() - t1:.1f}s")
    if model is not None:
        export_modes(spec, located, encoder, dense, token_heads, folder, wanted, artifacts, finish, params)
    for fmt in QUANTIZED:
        if fmt in job["formats"] and not is_current(fmt, manifest):
            build_quantized(fmt, spec, located, folder, finish)

    manifest.update({
        "model": spec.name, "source": located.source, "weights": located.weights,
        "identity": located.identity if located.folder is None else {k: v for k, v in located.identity.items()},
        "weights_sha256": artifacts["reference"]["files"]["model.safetensors"],
        "heads_sha256": artifacts["reference"]["files"].get("heads.safetensors"),
        "parameters": params, "versions": exporter_versions(), "created": manifest.get("created") or time.time(),
        "key": folder.name,
    })
    tmp_manifest = folder / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp_manifest.replace(folder / MANIFEST)
    log(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(build(json.loads(Path(sys.argv[1]).read_text())))
