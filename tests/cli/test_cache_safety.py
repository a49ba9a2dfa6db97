"""An export being built is never stale and never pruned; prune lists what it deletes and asks
(issue #13, item 6)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from cli_support import assert_rejected, invoke
from conftest import REPO

HOLD = """\
import sys, time
from pathlib import Path
from embedperf.prepare.cache import building
with building(Path(sys.argv[1])):
    print("ready", flush=True)
    time.sleep(300)
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("EMBEDPERF_CACHE", str(root))
    return root


def test_an_entry_being_built_is_shown_as_such_and_never_pruned(cache):
    folder = cache / "models" / "0123456789abcdef0123"
    (folder / "onnx.tmp").mkdir(parents=True)
    (folder / "onnx.tmp" / "model.onnx").write_bytes(b"\0" * 2**20)  # an export half written
    # a builder in another process, holding the entry as ensure_prepared does
    builder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert builder.stdout.readline().strip() == "ready"
        listing = invoke("cache", "ls")
        assert f"{folder.name}  being built (pid {builder.pid}" in listing.stdout, listing.stdout
        assert "stale" not in listing.stdout
        stale_only = invoke("cache", "prune", "--yes")  # not stale: not even a candidate
        assert stale_only.returncode == 0 and stale_only.stdout.strip() == "nothing to remove", stale_only.stdout
        for args in (["--all", "--yes"], [folder.name, "--yes"]):
            result = invoke("cache", "prune", *args)
            assert result.returncode == 0, result.stderr
            assert f"keeping {folder.name}: being built now" in result.stdout
            assert (folder / "onnx.tmp" / "model.onnx").exists()
    finally:
        builder.send_signal(signal.SIGKILL)  # the builder dies without cleaning up
        builder.wait()
        builder.stdout.close()
    # its marker is left behind, naming a process that is gone: an interrupted build, stale
    listing = invoke("cache", "ls")
    assert f"{folder.name}  incomplete (an interrupted build)" in listing.stdout, listing.stdout
    refused = invoke("cache", "prune")  # stdin is not a terminal and there is no --yes
    assert_rejected(refused, "cache prune would remove 1 entry: pass --yes to confirm")
    assert "will remove:" in refused.stdout and folder.name in refused.stdout
    assert folder.exists()
    removed = invoke("cache", "prune", "--yes")
    assert removed.returncode == 0 and f"removed {folder.name}" in removed.stdout
    assert not folder.exists()


def test_prune_of_an_unknown_key_is_one_line(cache):
    assert_rejected(invoke("cache", "prune", "nope", "--yes"), "no cache entry nope under")


def test_ensure_prepared_marks_the_entry_while_it_builds(cache):
    """The real writer: while the build subprocess runs, the entry lists as being built; after, as done."""
    from embedperf.models.registry import get_model
    from embedperf.models.sources import locate
    from embedperf.prepare import ensure_prepared
    from embedperf.prepare.cache import BUILDING, list_entries

    spec = get_model("bge-m3")
    seen = []

    def say(line: str) -> None:
        if line.startswith("  [prepare]"):  # a line from the build subprocess, streamed while it runs
            seen.extend((e["key"], bool(e["building"]), e["stale"]) for e in list_entries(cache))

    prepared = ensure_prepared(spec, locate(spec, "tiny"), {"reference"}, cache / "models", 1, say)
    assert seen and all(building and not stale for _, building, stale in seen), seen
    assert {key for key, _, _ in seen} == {prepared.folder.name}
    assert not (prepared.folder / BUILDING).exists()
    (entry,) = list_entries(cache)
    assert not entry["building"] and not entry["stale"] and entry["artifacts"] == ["reference"]
