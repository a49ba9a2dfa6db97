"""The Terraform, read with python-hcl2 (no terraform binary, no cloud): the resources and
variables a user relies on are there and say what they promise."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from infra_support import BOOTSTRAP, TERRAFORM_DIR

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is not installed (pip install python-hcl2)")

ROOT = TERRAFORM_DIR / "aws"
MODULE = TERRAFORM_DIR / "modules" / "benchmark-host"


def _clean(value):
    """python-hcl2 output without its quoting and block markers (works for v4-v8 layouts)."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k not in ("__is_block__", "__start_line__",
                                                                               "__end_line__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(folder: Path) -> dict:
    """All .tf files of a folder, merged: {"resource": {type: {name: body}}, "variable": {...}, ...}."""
    out: dict = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open() as f:
            doc = _clean(hcl2.load(f))
        for kind, blocks in doc.items():
            if kind in ("resource", "data"):
                for block in blocks:
                    for rtype, named in block.items():
                        out.setdefault(kind, {}).setdefault(rtype, {}).update(named)
            elif kind in ("variable", "output", "module"):
                for block in blocks:
                    out.setdefault(kind, {}).update(block)
            else:
                out.setdefault(kind, []).extend(blocks)
    return out


@pytest.fixture(scope="module")
def root() -> dict:
    return load(ROOT)


@pytest.fixture(scope="module")
def module() -> dict:
    return load(MODULE)


def block(body: dict, name: str) -> dict:
    value = body[name]
    return value[0] if isinstance(value, list) else value


def test_every_file_parses():
    files = list(TERRAFORM_DIR.rglob("*.tf"))
    assert len(files) >= 8
    for path in files:
        with path.open() as f:
            hcl2.load(f)


def test_bucket_is_private_encrypted_versioned_with_lifecycle(root):
    res = root["resource"]
    pab = res["aws_s3_bucket_public_access_block"]["results"]
    assert all(pab[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                        "restrict_public_buckets"))
    sse = block(block(res["aws_s3_bucket_server_side_encryption_configuration"]["results"], "rule"),
                "apply_server_side_encryption_by_default")
    assert sse["sse_algorithm"] == "aws:kms" and "aws_kms_key.results" in sse["kms_master_key_id"]
    assert res["aws_kms_key"]["results"]["enable_key_rotation"] is True
    versioning = block(res["aws_s3_bucket_versioning"]["results"], "versioning_configuration")
    assert versioning["status"] == "Enabled"
    rules = res["aws_s3_bucket_lifecycle_configuration"]["results"]["rule"]
    assert any("expiration" in r and r["status"] == "Enabled" for r in rules)
    assert any("abort_incomplete_multipart_upload" in r for r in rules)
    assert block(res["aws_s3_bucket_ownership_controls"]["results"], "rule")["object_ownership"] == "BucketOwnerEnforced"
    assert res["aws_s3_bucket"]["results"]["force_destroy"] == "${var.force_destroy_bucket}"
    # TLS only
    statement = block(root["data"]["aws_iam_policy_document"]["bucket"], "statement")
    assert statement["effect"] == "Deny" and block(statement, "condition")["variable"] == "aws:SecureTransport"


def test_run_input_is_uploaded_under_runs_id_input(root):
    res = root["resource"]["aws_s3_object"]
    assert set(res) == {"package", "suite"}
    assert "input" in root["locals"][0]["input_prefix"] and "var.run_id" in root["locals"][0]["input_prefix"]
    for obj in res.values():
        assert obj["server_side_encryption"] == "aws:kms"


def test_one_host_per_machine(root):
    host = root["module"]["host"]
    assert host["source"] == "../modules/benchmark-host"
    assert host["for_each"] == "${var.machines}"
    machine_type = root["variable"]["machines"]["type"]
    for field in ("instance_type", "arch", "device", "ami_id", "spot", "max_hours", "root_volume_gb"):
        assert field in machine_type


def test_host_role_reads_only_its_input_and_writes_only_its_results(module):
    statements = {s["sid"]: s for s in module["data"]["aws_iam_policy_document"]["host"]["statement"]}
    assert set(statements) == {"ReadRunInput", "WriteOwnResults", "UseBucketKeyThroughS3"}
    assert statements["ReadRunInput"]["actions"] == ["s3:GetObject"]
    assert statements["ReadRunInput"]["resources"] == ["${local.bucket_arn}/${local.input_prefix}/*"]
    assert statements["WriteOwnResults"]["actions"] == ["s3:PutObject"]
    assert statements["WriteOwnResults"]["resources"] == ["${local.bucket_arn}/${local.results_prefix}/*"]
    assert block(statements["UseBucketKeyThroughS3"], "condition")["variable"] == "kms:ViaService"
    for s in statements.values():
        assert not any("*" in a for a in s["actions"]), s
    local = module["locals"][0]
    assert local["input_prefix"] == "${local.run_prefix}/input"
    assert local["results_prefix"] == "${local.run_prefix}/results/${var.name}"
    assert local["run_prefix"] == "runs/${var.run_id}"
    # SSM only when asked for; no other managed policy
    ssm = module["resource"]["aws_iam_role_policy_attachment"]["ssm"]
    assert ssm["count"] == "${var.enable_ssm ? 1 : 0}"
    assert module["variable"]["enable_ssm"]["default"] is False


def test_no_inbound_access(module):
    sg = module["resource"]["aws_security_group"]["host"]
    assert "ingress" not in sg
    assert {e["from_port"] for e in sg["egress"]} == {80, 443}
    assert set(module["resource"]) >= {"aws_instance", "aws_security_group", "aws_iam_role", "aws_iam_instance_profile"}
    assert "aws_security_group_rule" not in module["resource"]
    assert "key_name" not in module["resource"]["aws_instance"]["host"]  # no SSH key pair


def test_instance_cannot_outlive_its_budget(module):
    host = module["resource"]["aws_instance"]["host"]
    assert host["instance_initiated_shutdown_behavior"] == "terminate"
    meta = block(host, "metadata_options")
    assert meta["http_tokens"] == "required" and meta["http_endpoint"] == "enabled"
    disk = block(host, "root_block_device")
    assert disk["encrypted"] is True and disk["volume_size"] == "${var.root_volume_gb}"
    spot = block(block(host["dynamic"][0], "instance_market_options"), "content")
    assert spot["market_type"] == "spot"
    assert block(spot, "spot_options")["instance_interruption_behavior"] == "terminate"
    template = (MODULE / "user_data.yaml.tftpl").read_text()
    assert template.startswith("#cloud-config")
    assert "bootcmd:" in template and "/var/lib/embedperf/deadline" in template and "poweroff" in template
    assert "${max_seconds}" in template and "max_seconds      = ceil(var.max_hours * 3600)" in (MODULE / "main.tf").read_text()
    assert "/opt/embedperf/bootstrap.sh" in template and "EMBEDPERF_SHUTDOWN" in (MODULE / "main.tf").read_text()


def test_variables_are_documented(root, module):
    for where, doc, needed in (
        ("root", root, {"region", "run_id", "machines", "bucket_name", "package_path", "suite_path", "enable_ssm",
                        "vpc_id", "subnet_id", "results_retention_days", "force_destroy_bucket"}),
        ("module", module, {"name", "run_id", "bucket_name", "instance_type", "arch", "device", "ami_id", "spot",
                            "max_hours", "root_volume_gb", "enable_ssm", "bootstrap_script", "subnet_id", "vpc_id"}),
    ):
        assert needed <= set(doc["variable"]), (where, needed - set(doc["variable"]))
        for name, var in doc["variable"].items():
            assert var.get("description", "").strip(), f"{where} variable {name} has no description"
        for name, out in doc["output"].items():
            assert out.get("description", "").strip(), f"{where} output {name} has no description"
    assert {"bucket_name", "instance_ids", "results_uri"} <= set(root["output"])
    assert "instance_id" in module["output"]
    readme = (MODULE / "README.md").read_text()
    for name in module["variable"]:
        assert f"`{name}`" in readme, f"module README does not document {name}"
    for name in module["output"]:
        assert f"`{name}`" in readme, f"module README does not document output {name}"


def test_amis_are_variables_not_lookups(root, module):
    assert "aws_ami" not in root.get("data", {}) and "aws_ami" not in module.get("data", {})
    assert module["variable"]["ami_id"]["type"] == "${string}" or "string" in str(module["variable"]["ami_id"]["type"])


def test_bootstrap_fits_in_user_data():
    # EC2 user data is at most 16 KiB; the module gzips the script inside gzipped cloud-config.
    raw = BOOTSTRAP.read_bytes()
    assert len(gzip.compress(raw)) < 8 * 1024
    assert raw.startswith(b"#!/usr/bin/env bash")


def test_checkov_skips_carry_a_reason():
    for path in TERRAFORM_DIR.rglob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                assert re.search(r"checkov:skip=CKV2?_AWS_\d+:\S.{15,}", line), f"{path.name}: skip without reason: {line}"
