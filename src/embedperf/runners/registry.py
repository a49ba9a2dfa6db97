"""The one list of runtimes: name -> how its runner is launched and what artifact it reads.

Nothing here imports a framework; availability is checked by looking for files and
packages, never by loading them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from embedperf.paths import cache_root


@dataclass(frozen=True)
class Runtime:
    """A runtime embedperf can launch."""

    name: str
    language: str  # python | rust | cpp
    artifact: str  # reference | onnx | openvino | none
    description: str
    module: str | None = None  # python -m <module>
    binary: str | None = None  # native executable name
    python_package: str | None = None  # must be importable for a Python runner
    devices: tuple[str, ...] = ("cpu", "cuda")
    is_null: bool = False
    build_hint: str = ""
    # what a runtime that builds its own graph implements (models/registry.py ModelSpec.graph_features);
    # None: it runs the exported graph whole, whatever it holds
    implements: frozenset[str] | None = None


def rust_target_dir() -> Path:
    return Path(os.environ.get("EMBEDPERF_CARGO_TARGET", cache_root() / "cargo-target"))


def cpp_build_dir() -> Path:
    return Path(os.environ.get("EMBEDPERF_CPP_BUILD", cache_root() / "cpp-build"))


RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("torch", "python", "reference", "PyTorch eager (sdpa attention)", module="embedperf.runners.torch",
                python_package="torch"),
        Runtime("onnxruntime-python", "python", "onnx", "ONNX Runtime, Python binding",
                module="embedperf.runners.onnxruntime", python_package="onnxruntime"),
        Runtime("onnxruntime-cpp", "cpp", "onnx", "ONNX Runtime, C++ API", binary="embedperf-ort-cpp",
                build_hint="build it with `make native` (needs cmake and a C++17 compiler)"),
        Runtime("onnxruntime-rust", "rust", "onnx", "ONNX Runtime, Rust ort crate", binary="embedperf-ort-rust",
                build_hint="build it with `make native` (needs cargo)"),
        Runtime("candle", "rust", "reference", "Candle (Rust), models written in this project",
                binary="embedperf-candle", build_hint="build it with `make native` (needs cargo)",
                implements=frozenset({"family:bert", "family:xlm-roberta", "family:gemma3", "family:qwen3",
                                      "family:clip", "family:siglip", "pooling:mean", "pooling:cls",
                                      "pooling:last", "pooling:tower", "dense", "normalize"})),
        Runtime("openvino", "python", "openvino", "OpenVINO, Python API, fp32 IR", module="embedperf.runners.openvino",
                python_package="openvino", devices=("cpu",)),
        Runtime("null", "python", "none", "does no work: the Python harness's own cost",
                module="embedperf.runners.null", is_null=True),
        Runtime("null-rust", "rust", "none", "does no work: the Rust harness's own cost", binary="embedperf-null-rust",
                is_null=True, build_hint="build it with `make native` (needs cargo)"),
        Runtime("null-cpp", "cpp", "none", "does no work: the C++ harness's own cost", binary="embedperf-null-cpp",
                is_null=True, build_hint="build it with `make native` (needs cmake and a C++17 compiler)"),
    )
}

# `--runtimes all` means every real runtime; null runners are asked for by name.
ALL = tuple(name for name, r in RUNTIMES.items() if not r.is_null)


class UnknownRuntime(ValueError):
    """Raised for a runtime name the registry does not hold."""


def get_runtime(name: str) -> Runtime:
    if name not in RUNTIMES:
        raise UnknownRuntime(f"unknown runtime {name!r}; choose from: {', '.join(RUNTIMES)}, all")
    return RUNTIMES[name]


def unimplemented(runtime: Runtime, spec) -> str | None:
    """Why a runtime that builds its own graph cannot run this model (a family, pooling or head it lacks), or None."""
    if runtime.implements is None:
        return None
    missing = sorted(spec.graph_features() - runtime.implements)
    if not missing:
        return None
    return f"{runtime.name} does not implement {', '.join(missing)} (it builds its own graph of the model)"


def binary_path(runtime: Runtime) -> Path:
    folder = rust_target_dir() / "release" if runtime.language == "rust" else cpp_build_dir()
    return folder / runtime.binary


def availability(runtime: Runtime) -> str | None:
    """None when the runtime can run here, else the reason it cannot and how to fix it."""
    if runtime.module:
        if runtime.python_package and importlib.util.find_spec(runtime.python_package) is None:
            return f"python package {runtime.python_package!r} is not installed: run `make setup`"
        return None
    path = binary_path(runtime)
    if not path.is_file():
        return f"{path} is missing: {runtime.build_hint}"
    return None


def command(runtime: Runtime, request: Path, result: Path) -> list[str]:
    """The command line that starts this runtime's runner."""
    tail = ["--request", str(request), "--result", str(result)]
    if runtime.module:
        return [sys.executable, "-m", runtime.module, *tail]
    return [str(binary_path(runtime)), *tail]


def runner_env(runtime: Runtime) -> dict[str, str]:
    """Extra environment a runner needs (the ORT library the native bindings must share)."""
    env: dict[str, str] = {}
    if runtime.artifact == "onnx" and runtime.language == "rust":
        lib = ort_library()
        if lib:
            env["ORT_DYLIB_PATH"] = str(lib)
    return env


def ort_library() -> Path | None:
    """The libonnxruntime of the installed onnxruntime wheel, found without importing it."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    capi = Path(list(spec.submodule_search_locations)[0]) / "capi"
    libs = sorted(capi.glob("libonnxruntime.so.*"))
    return libs[0] if libs else None
