"""Local snapshots of every family, pooling mode and Dense head, run by `embedperf run` on every runtime.

Each cell is `ok` with parity >= 0.9999 against the fp32 reference built from the same snapshot, or (where a
runtime builds its own graph and lacks a part of it) never `ok`: `skipped` with the reason once the runner
registry declares what each runtime implements (see INTEGRATION below).
"""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import FAST, available, cells_of, embedperf
from embedperf.models.snapshot import derive
from snapshot_support import snapshot  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

RUNTIMES = ["torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust", "candle", "openvino"]
TEXT_SNAPSHOTS = [
    dict(family="bert", pooling=("mean",), dense=((24, False, "Identity"),)),
    dict(family="bert", pooling=("cls",)),
    dict(family="bert", pooling=("lasttoken",)),
    dict(family="bert", pooling=("max",), dense=((24, True, "Tanh"),)),
    dict(family="bert", pooling=("mean_sqrt_len_tokens",)),
    dict(family="bert", pooling=("weightedmean",)),
    dict(family="bert", pooling=("cls", "mean")),
    dict(family="bert", pooling=("mean",), dense=((16, True, "Identity"),), legacy=True),
    dict(family="xlm-roberta", pooling=("cls",)),
    dict(family="gemma3", pooling=("mean",), dense=((96, False, "Identity"), (64, False, "Identity"))),
    dict(family="qwen3", pooling=("lasttoken",)),
]
TOWER_SNAPSHOTS = [dict(family="clip"), dict(family="siglip")]

# What the Candle runner implements itself (native/rust/candle-runner: model.rs, pooling.rs): every family, the
# pooling modes mean, cls, last (and the towers' own), bias-free Dense layers without activation, normalize.
CANDLE_IMPLEMENTS = frozenset({f"family:{f}" for f in ("bert", "xlm-roberta", "gemma3", "qwen3", "clip", "siglip")}
                              | {f"pooling:{p}" for p in ("mean", "cls", "last", "tower")} | {"dense", "normalize"})
# The pooling names the C++ runner's request check knows today (native/cpp/src/protocol.cpp); it runs the whole
# exported graph, so any pooling the schema allows is inside its model.onnx.
CPP_KNOWS = ("mean", "cls", "last", "tower")


def run_suite(tmp_path, folders: list, seq: list | None) -> list[dict]:
    suite = {"models": [{"path": str(f), "source": "local"} for f in folders], "batch": [3],
             "runtimes": available(RUNTIMES)}
    if seq:
        suite["seq"] = seq
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    proc = embedperf("run", "--suite", str(path), *FAST, "--results", str(tmp_path / "results"), timeout=3000)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    run_dir = next(p for p in (tmp_path / "results").iterdir() if p.is_dir())
    return cells_of(run_dir), run_dir


@pytest.fixture(scope="module")
def text_run(snapshot, tmp_path_factory):
    folders = [snapshot(**case) for case in TEXT_SNAPSHOTS]
    cells, run_dir = run_suite(tmp_path_factory.mktemp("text-run"), folders, [16])
    return {f.name: derive(f, f.name) for f in folders}, cells, run_dir


@pytest.fixture(scope="module")
def tower_run(snapshot, tmp_path_factory):
    folders = [snapshot(**case) for case in TOWER_SNAPSHOTS]
    cells, run_dir = run_suite(tmp_path_factory.mktemp("tower-run"), folders, None)
    return {f.name: derive(f, f.name) for f in folders}, cells, run_dir


def can_run(runtime: str, spec) -> bool:
    if runtime == "candle":
        return spec.graph_features() <= CANDLE_IMPLEMENTS
    if runtime == "onnxruntime-cpp":
        return spec.pooling in CPP_KNOWS
    return True


@pytest.mark.parametrize("which", ["text_run", "tower_run"])
def test_every_cell_a_runtime_can_run_is_ok_and_matches_the_reference(which, request):
    specs, cells, _ = request.getfixturevalue(which)
    assert {c["model"] for c in cells} == set(specs), "every snapshot is a model of the run, named from its folder"
    checked = 0
    for cell in cells:
        if not can_run(cell["runtime"], specs[cell["model"]]):
            continue
        assert cell["status"] == "ok", (cell["model"], cell["runtime"], cell["reason"])
        assert cell["min_cosine"] >= 0.9999, (cell["model"], cell["runtime"], cell["min_cosine"])
        checked += 1
    assert checked >= len(specs) * 3


def test_candle_never_passes_a_graph_it_does_not_implement(text_run):
    """A pooling it lacks fails its load; a Dense bias or activation it would drop fails parity: never `ok`."""
    specs, cells, _ = text_run
    lacking = [c for c in cells if c["runtime"] == "candle" and not can_run("candle", specs[c["model"]])]
    if not lacking:
        pytest.skip("candle is not built here")
    assert len({c["model"] for c in lacking}) == 5  # max, mean_sqrt_len_tokens, weightedmean, cls+mean, a bias
    for cell in lacking:
        assert cell["status"] in ("failed", "skipped"), (cell["model"], cell["status"])


def test_cells_store_the_spec_read_from_the_snapshot(text_run):
    """Each cell carries ModelSpec.describe() under model.spec."""
    specs, _, run_dir = text_run
    for path in sorted(run_dir.glob("*__torch__*.json")):
        doc = json.loads(path.read_text())
        spec = specs[doc["spec"]["model"]]
        assert doc["model"]["pooling"] == spec.pooling
        assert doc["model"].get("spec") == json.loads(json.dumps(spec.describe())), path.name


def test_what_a_runtime_does_not_implement_is_skipped_with_the_reason(text_run):
    """Candle's cells for a graph it lacks are
    `skipped` naming the missing part; the C++ runner accepts every pooling mode the schema allows."""
    specs, cells, _ = text_run
    if available(["candle", "onnxruntime-cpp"]) != ["candle", "onnxruntime-cpp"]:
        pytest.skip("needs the candle and onnxruntime-cpp runners built")
    for cell in cells:
        spec = specs[cell["model"]]
        if cell["runtime"] == "candle" and not can_run("candle", spec):
            missing = sorted(spec.graph_features() - CANDLE_IMPLEMENTS)
            assert cell["status"] == "skipped", (cell["model"], cell["reason"])
            assert all(m.split(":")[-1] in cell["reason"] for m in missing), cell["reason"]
        if cell["runtime"] == "onnxruntime-cpp":
            assert cell["status"] == "ok" and cell["min_cosine"] >= 0.9999, (cell["model"], cell["reason"])
