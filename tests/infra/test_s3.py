"""embedperf.cloud.s3 against moto on 127.0.0.1, and against folders."""

from __future__ import annotations

import json
import os

import pytest

from infra_support import BUCKET, s3_server  # noqa: F401


def test_upload_then_download_keeps_the_layout(s3_server, tmp_path):  # noqa: F811
    from embedperf.cloud.s3 import download_run, upload_file

    docs = []
    for machine in ("x86", "arm"):
        for i in range(2):
            p = tmp_path / "src" / machine / f"cell{i}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps({"machine": machine, "i": i}))
            upload_file(p, f"s3://{BUCKET}/runs/r9/results/{machine}/")
            docs.append(p)
    log = tmp_path / "bootstrap.log"
    log.write_text("not json")
    upload_file(log, f"s3://{BUCKET}/runs/r9/results/x86")  # no trailing slash: still a prefix
    out = download_run(f"s3://{BUCKET}/runs/r9/results/", tmp_path / "dest")
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == ["arm/cell0.json", "arm/cell1.json", "x86/cell0.json", "x86/cell1.json"]
    assert json.loads((out / "arm" / "cell1.json").read_text()) == {"machine": "arm", "i": 1}
    # a run prefix (not only its results/) works too
    out2 = download_run(f"s3://{BUCKET}/runs/r9/", tmp_path / "dest2")
    assert (out2 / "results" / "x86" / "cell0.json").is_file()


def test_missing_bucket_is_one_line(s3_server, tmp_path):  # noqa: F811
    from embedperf.cloud.s3 import download_run
    from embedperf.spec import SpecError

    with pytest.raises(SpecError) as e:
        download_run("s3://no-such-bucket-here/runs/x/", tmp_path)
    assert "no such bucket" in str(e.value)


def test_folders_work_the_same(tmp_path):
    from embedperf.cloud.s3 import download_run, upload_file, upload_new

    src = tmp_path / "results" / "run1"
    (src / "work").mkdir(parents=True)
    (src / "a.json").write_text("{}")
    (src / "run.json").write_text("{}")
    (src / "work" / "request.json").write_text("{}")
    (src / "b.json.tmp").write_text("{}")
    ledger = tmp_path / "ledger"
    sent = upload_new(tmp_path / "results", str(tmp_path / "dest"), ledger)
    assert [p.name for p in sent] == ["a.json"]
    assert upload_new(tmp_path / "results", str(tmp_path / "dest"), ledger) == []  # nothing twice
    (src / "c.json").write_text("{}")
    assert [p.name for p in upload_new(tmp_path / "results", str(tmp_path / "dest"), ledger)] == ["c.json"]
    assert sorted(os.listdir(tmp_path / "dest")) == ["a.json", "c.json"]
    upload_file(src / "a.json", str(tmp_path / "dest2" / "m1"))
    out = download_run(str(tmp_path / "dest2"), tmp_path / "back")
    assert (out / "m1" / "a.json").is_file()
