"""terraform fmt -check, validate and plan -refresh=false, where the terraform binary and an offline
copy of the AWS provider exist (otherwise skipped with the reason). The plan talks to a moto server
on 127.0.0.1, not to AWS."""

from __future__ import annotations

import json
import shutil

import pytest

from infra_support import BOOTSTRAP, TERRAFORM_DIR, run_terraform, s3_server, terraform, terraform_env  # noqa: F401


def test_fmt_check():
    terraform()
    proc = run_terraform(["fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR)], TERRAFORM_DIR, {})
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def initialized(tmp_path_factory):
    """A copy of infra/terraform, `terraform init` done (provider from the local mirror)."""
    tmp = tmp_path_factory.mktemp("tf")
    env = terraform_env(tmp)
    shutil.copytree(TERRAFORM_DIR, tmp / "terraform", ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    cwd = tmp / "terraform" / "aws"
    proc = run_terraform(["init", "-input=false", "-no-color", f"-backend-config=path={tmp / 'state.tfstate'}"],
                         cwd, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return cwd, env, tmp


def test_validate(initialized):
    cwd, env, _ = initialized
    proc = run_terraform(["validate", "-json", "-no-color"], cwd, env)
    doc = json.loads(proc.stdout)
    assert doc["valid"], json.dumps(doc["diagnostics"], indent=1)


def test_plan_creates_bucket_and_one_host_per_machine(initialized, s3_server):  # noqa: F811
    cwd, env, tmp = initialized
    (tmp / "pkg.tar.gz").write_bytes(b"package")
    (tmp / "suite.yaml").write_text("runtimes: [null]\nbatch: [1]\nseq: [16]\n")
    machines = {
        "x86": {"instance_type": "c7i.large", "arch": "x86_64", "device": "cpu", "ami_id": "ami-0123456789abcdef0"},
        "arm": {"instance_type": "c8g.large", "arch": "arm64", "device": "cpu", "ami_id": "ami-0123456789abcdef1",
                "spot": True},
        "gpu": {"instance_type": "g6.xlarge", "arch": "x86_64", "device": "cuda", "ami_id": "ami-0123456789abcdef2",
                "max_hours": 2},
    }
    var_file = tmp / "run.tfvars.json"
    var_file.write_text(json.dumps({"run_id": "r-test", "bucket_name": "embedperf-plan-test", "machines": machines, "package_path": str(tmp / "pkg.tar.gz"),
                                    "suite_path": str(tmp / "suite.yaml"), "bootstrap_script_path": str(BOOTSTRAP)}))
    proc = run_terraform(["plan", "-refresh=false", "-input=false", "-no-color", f"-var-file={var_file}",
                          f"-out={tmp / 'plan.bin'}"], cwd, {**env, **s3_server}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    plan = json.loads(run_terraform(["show", "-json", str(tmp / "plan.bin")], cwd, env).stdout)
    creates = {rc["address"]: rc["change"]["after"] for rc in plan["resource_changes"]
               if rc["change"]["actions"] == ["create"]}
    for name in machines:
        inst = creates[f'module.host["{name}"].aws_instance.host']
        assert inst["instance_initiated_shutdown_behavior"] == "terminate"
        assert inst["metadata_options"][0]["http_tokens"] == "required"
        assert inst["root_block_device"][0]["encrypted"] is True
        assert bool(inst.get("instance_market_options")) == (name == "arm")
        assert f'module.host["{name}"].aws_iam_role_policy.host' in creates  # its JSON needs the key ARN: apply time
        assert f'module.host["{name}"].aws_iam_instance_profile.host' in creates
        assert "ingress" not in str(creates[f'module.host["{name}"].aws_security_group.host'].get("ingress") or "")
    assert "aws_s3_bucket.results" in creates and "aws_kms_key.results" in creates
    assert "aws_s3_object.package[0]" in creates
    assert creates["aws_s3_object.suite[0]"]["key"] == "runs/r-test/input/suite.yaml"
    # the rendered user data carries the deadline and the bootstrap script
    import base64
    import gzip

    user_data = gzip.decompress(base64.b64decode(creates['module.host["gpu"].aws_instance.host']["user_data_base64"]))
    text = user_data.decode()
    assert "+ 7200 ))" in text and "EMBEDPERF_DEVICE=\"cuda\"" in text and "EMBEDPERF_SHUTDOWN=\"1\"" in text
    assert len(user_data) < 16 * 1024


def test_plan_with_no_machines_keeps_only_the_bucket(initialized, s3_server):  # noqa: F811
    cwd, env, tmp = initialized
    proc = run_terraform(["plan", "-refresh=false", "-input=false", "-no-color", "-json", "-var", "machines={}"],
                         cwd, {**env, **s3_server}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    planned = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    addresses = {m["change"]["resource"]["addr"] for m in planned if m.get("type") == "planned_change"}
    assert "aws_s3_bucket.results" in addresses
    assert not any(a.startswith("module.host") or a.startswith("aws_s3_object") for a in addresses)
