"""Prepare a model once: reference weights, ONNX and OpenVINO exports and their int8 forms, cached by content hash.

Formats: reference, onnx, openvino (fp32), onnx:int8, openvino:int8, openvino:int8w, onnx+MODE and openvino+MODE
(an output mode's graph) (prepare/cache.py).

The work runs in a subprocess (`embedperf.prepare.build`) so the orchestrator never
imports a framework and an export's memory is returned when it ends.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from embedperf.models.registry import ModelSpec
from embedperf.models.sources import Located
from embedperf.prepare.cache import (FORMAT_FILES, QUANTIZED, Prepared, base_format, building, is_current,
                                      prepare_key, read_manifest)


class PrepareError(RuntimeError):
    """Preparing a model failed or was refused; the message says why."""


def estimate_parameters(spec: ModelSpec, located: Located) -> int:
    """Parameter count from the config (twins) or the weight files' size (real weights)."""
    if located.folder is not None:
        files = list(located.folder.glob("*.safetensors")) + list(located.folder.glob("*_Dense/*.safetensors"))
        return sum(f.stat().st_size for f in files) // 4
    if spec.multimodal:
        from embedperf.measure.flops import tower_parameters

        return sum(sum(tower_parameters(spec, located.source, m).values()) for m in spec.modalities)
    c = located.identity["config"]
    h, layers, inter, vocab = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["vocab_size"]
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or h // heads
    kv = c.get("num_key_value_heads", heads)
    attn = h * head_dim * (2 * heads + 2 * kv)
    mlp = (3 if c.get("model_type") in ("gemma3_text", "qwen3") else 2) * h * inter
    dense = sum(d.in_features * d.out_features for d in spec.heads(located.source))
    return vocab * h + c.get("max_position_embeddings", 0) * h * (c.get("model_type") in ("bert", "xlm-roberta")) \
        + layers * (attn + mlp) + dense


def check_resources(folder: Path, params: int, formats: set[str]) -> None:
    """Refuse clearly, before exporting, when disk or memory is short."""
    weight_bytes = params * 4
    bases = {base_format(f) for f in formats}
    # fp32 copies (an OpenVINO IR is converted from its ONNX graph; each output mode has both), plus about a
    # quarter of one per int8 artifact
    graphs = sum((f"onnx{m}" in bases or f"openvino{m}" in bases) + (f"openvino{m}" in bases)
                 for m in {"", *(b[b.index("+"):] for b in bases if "+" in b)})
    copies = 1 + graphs + 0.3 * len(set(formats) & set(QUANTIZED))
    need_disk = int(weight_bytes * copies * 1.1)
    free_disk = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    if free_disk < need_disk:
        raise PrepareError(f"not enough disk to prepare: need about {need_disk / 2**30:.1f} GiB under "
                           f"{folder.parent}, {free_disk / 2**30:.1f} GiB free")
    # the exporter holds the model, its traced program and the serialized graph at once
    need_mem = int(weight_bytes * 3.5) + (1 << 30)
    free_mem = psutil.virtual_memory().available
    if free_mem < need_mem:
        raise PrepareError(f"not enough memory to export: need about {need_mem / 2**30:.1f} GiB, "
                           f"{free_mem / 2**30:.1f} GiB available")


def _cause(log_path: Path) -> str:
    """The most telling line of a failed build's log: its last error line, else its last line."""
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln.split(":")[0] or ln.startswith("error")]
    pick = errors[-1] if errors else (lines[-1] if lines else "no output")
    return pick[:300]


def ensure_prepared(spec: ModelSpec, located: Located, formats: set[str], root: Path, threads: int,
                    say=print) -> Prepared:
    """The prepared folder holding every requested format, built only where missing.

    `formats`: any of reference, onnx, openvino, onnx:int8, openvino:int8, openvino:int8w, and the graphs of
    output modes onnx+MODE, openvino+MODE (cache.format_for(runtime.artifact, precision, outputs) names the
    one a cell needs). A quantized format
    whose recipe or tool versions changed since it was built counts as missing and is rebuilt.
    """
    unknown = {f for f in formats if f not in FORMAT_FILES and f != "none"}
    if unknown:
        raise PrepareError(f"unknown artifact format(s) {sorted(unknown)}; known: {', '.join(FORMAT_FILES)}")
    formats = set(formats) - {"none"}
    key = prepare_key(spec, located)
    folder = root / key
    manifest = read_manifest(folder) or {}
    missing = {f for f in formats | {"reference"} if not is_current(f, manifest)}
    if not missing:
        say(f"prepare: reusing {spec.name} ({located.source}) from cache {key}")
        return Prepared(folder, manifest)

    folder.parent.mkdir(parents=True, exist_ok=True)
    check_resources(folder, estimate_parameters(spec, located), missing)
    # the marker tells `cache ls`/`cache prune` (and another run) that this entry is being written
    with building(folder, say) as mark:
        manifest = read_manifest(folder) or {}  # another run may have built it while we waited
        missing = {f for f in formats | {"reference"} if not is_current(f, manifest)}
        if not missing:
            say(f"prepare: reusing {spec.name} ({located.source}) from cache {key}")
            return Prepared(folder, manifest)
        say(f"prepare: building {', '.join(sorted(missing))} for {spec.name} ({located.source}) into cache {key}")
        job = {"model": spec.name, "source": located.source, "folder": str(located.folder) if located.folder else None,
               "identity": located.identity, "weights": located.weights, "formats": sorted(formats),
               "out": str(folder), "threads": threads}
        job_path = folder / "job.json"
        job_path.write_text(json.dumps(job, indent=1))
        log_path = folder / "prepare.log"
        with open(log_path, "w") as log:
            # Stream the build's own progress lines ("[prepare] ...") while keeping the whole log.
            with subprocess.Popen([sys.executable, "-m", "embedperf.prepare.build", str(job_path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  text=True, bufsize=1) as proc:
                mark.add(proc.pid)
                try:
                    for line in proc.stdout:
                        log.write(line)
                        if line.startswith("[prepare]"):
                            say("  " + line.rstrip())
                except BaseException:  # Ctrl-C or SIGTERM: the build must not outlive the run
                    proc.kill()
                    proc.wait()
                    raise
    if proc.returncode != 0:
        raise PrepareError(f"preparing {spec.name} failed (exit {proc.returncode}): "
                           f"{_cause(log_path)}; full log: {log_path}")
    manifest = read_manifest(folder)
    if not manifest:
        raise PrepareError(f"preparing {spec.name} wrote no manifest; see {log_path}")
    return Prepared(folder, manifest)
