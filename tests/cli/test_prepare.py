"""Prepare: built once per content hash, reused and said so, refused clearly when resources are short."""

import json

import pytest

from conftest import embedperf
from embedperf.models.registry import get_model
from embedperf.models.sources import SourceError, locate
from embedperf.prepare import PrepareError, check_resources


def test_second_run_reuses_the_export_and_says_so(tmp_path):
    env = {"EMBEDPERF_CACHE": str(tmp_path / "cache")}
    args = ["run", "--model", "bge-m3", "--source", "tiny", "--runtimes", "onnxruntime-python", "--batch", "2",
            "--seq", "20", "--warmup", "1", "--min-calls", "2", "--min-seconds", "0", "--target-ci", "0",
            "--no-calibrate", "--forks", "1", "--results", str(tmp_path / "r")]
    first = embedperf(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert "prepare: building onnx, reference" in first.stdout
    manifest_path = next((tmp_path / "cache" / "models").glob("*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    assert set(manifest["artifacts"]) == {"reference", "onnx"}
    assert manifest["versions"]["torch"] and manifest["weights"] == "random"
    assert all(len(h) == 64 for a in manifest["artifacts"].values() for h in a["files"].values())
    second = embedperf(*args, env=env)
    assert second.returncode == 0, second.stderr
    assert "prepare: reusing BAAI/bge-m3 (tiny) from cache" in second.stdout
    assert "reference: reusing" in second.stdout
    listing = embedperf("cache", "ls", env=env).stdout
    assert manifest["key"] in listing and "BAAI/bge-m3 (tiny)" in listing
    pruned = embedperf("cache", "prune", "--all", "--yes", env=env)
    assert pruned.returncode == 0 and f"removed {manifest['key']}" in pruned.stdout
    assert not manifest_path.exists()


def test_twin_weights_are_the_same_on_every_prepare(tmp_path):
    """The twin is seeded: two fresh caches give byte-identical reference weights."""
    from embedperf.prepare import ensure_prepared

    spec = get_model("Qwen/Qwen3-Embedding-0.6B")
    hashes = [ensure_prepared(spec, locate(spec, "tiny"), {"reference"}, tmp_path / f"c{i}", 2, say=lambda _: None)
              .manifest["weights_sha256"] for i in range(2)]
    assert hashes[0] == hashes[1] and len(hashes[0]) == 64


def test_refuses_clearly_when_disk_or_memory_is_short(tmp_path):
    with pytest.raises(PrepareError, match="not enough (disk|memory)"):
        check_resources(tmp_path / "x", params=10**13, formats={"onnx", "openvino"})


def test_package_weights_are_checked_by_hash():
    located = locate(get_model("all-MiniLM-L6-v2"), "package")
    assert located.weights == "real"
    assert located.identity["weights_sha256"] == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def test_a_gated_hub_model_without_a_token_says_to_set_hf_token(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def refuse(*args, **kwargs):
        # built without an HTTP response, which this test has no server to give
        err = GatedRepoError.__new__(GatedRepoError)
        Exception.__init__(err, "403 Client Error: access to model google/embeddinggemma-300m is restricted")
        raise err

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(SourceError) as err:
        locate(get_model("google/embeddinggemma-300m"), "hub")
    assert "set HF_TOKEN" in str(err.value) and "\n" not in str(err.value)


def test_local_source_needs_a_snapshot_folder(tmp_path):
    with pytest.raises(SourceError, match="has no config.json"):
        locate(get_model("bge-m3"), "local", path=str(tmp_path))
