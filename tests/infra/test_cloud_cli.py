"""`embedperf cloud`: the plan of a three-machine suite with its cost, and one clear line for
what the user can fix (no Terraform, no credentials, a bad machines list, no run)."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from infra_support import BUCKET, cloud, drop_aws_credentials, s3_server, terraform, terraform_env  # noqa: F401

EXAMPLE = REPO / "suites" / "cloud-example.yaml"


def one_line_error(proc, message: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_help_lists_the_commands():
    proc = cloud("--help")
    assert proc.returncode == 0
    for command in ("plan", "up", "status", "collect", "down"):
        assert command in proc.stdout


def test_plan_refuses_without_terraform(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("EMBEDPERF_TERRAFORM", raising=False)
    for command in (["plan", str(EXAMPLE)], ["up", str(EXAMPLE), "--yes"], ["down", "--yes"]):
        one_line_error(cloud(*command), "error: terraform not found on PATH: install Terraform")


def test_plan_without_credentials_is_one_line(tmp_path, monkeypatch):
    terraform()
    drop_aws_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv("EMBEDPERF_CLOUD_STATE", str(tmp_path / "state"))
    proc = cloud("plan", str(EXAMPLE))
    one_line_error(proc, "error: no AWS credentials: set AWS_PROFILE")
    assert "x86-c7i" in proc.stdout  # the estimate needs no cloud


def test_plan_three_machine_types(tmp_path, monkeypatch, s3_server):  # noqa: F811
    """Machines, hours and cost, then what Terraform would create (against moto on 127.0.0.1)."""
    for key, value in terraform_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EMBEDPERF_CLOUD_STATE", str(tmp_path / "state"))
    proc = cloud("plan", str(EXAMPLE), "--run-id", "cloud-plan-test", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for name, itype in (("x86-c7i", "c7i.2xlarge"), ("arm-c8g", "c8g.2xlarge"), ("gpu-g6", "g6.xlarge")):
        line = next(l for l in out.splitlines() if l.startswith(name))
        assert itype in line and "$" in line
        assert f'create   module.host["{name}"].aws_instance.host' in out
        assert f'create   module.host["{name}"].aws_iam_role.host' in out
    assert "spot" in next(l for l in out.splitlines() if l.startswith("arm-c8g"))
    assert "3 machine(s)" in out and "estimated cost: $" in out and "(at most $" in out
    assert "Terraform plan:" in out and "create   aws_s3_bucket.results" in out
    assert "create   aws_s3_object.package[0]" in out
    # nothing was created: the state is empty
    assert not (tmp_path / "state" / "terraform.tfstate").exists() or \
        not json.loads((tmp_path / "state" / "terraform.tfstate").read_text()).get("resources")


def test_plan_prices_file_overrides(tmp_path, monkeypatch):
    from embedperf.cloud.machines import load_cloud_suite, load_prices, price_of

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"g6.xlarge": {"on_demand": 1.0, "spot": 0.4}, "c7i.2xlarge": 0.5}))
    suite = load_cloud_suite(EXAMPLE)
    table = load_prices(prices, suite)
    by_name = {m.name: m for m in suite.machines}
    assert price_of(by_name["gpu-g6"], table) == (1.0, "on-demand")
    assert price_of(by_name["x86-c7i"], table) == (0.5, "on-demand")
    assert price_of(by_name["arm-c8g"], table) == (0.13, "spot")  # from the suite's own table


@pytest.mark.parametrize("machines, message", [
    ("[{name: a, instance_type: c7i.large, arch: x86_64, device: cpu, ami: ami-0123456789abcdef0, colour: red}]",
     "unknown key(s) colour"),
    ("[{name: a, instance_type: c7i.large, arch: x86_64, device: cuda, ami: ami-0123456789abcdef0}]",
     "device cuda needs a GPU instance type"),
    ("[{name: a, instance_type: c7i.large, arch: sparc, device: cpu}]", "arch 'sparc'; choose from: x86_64, arm64"),
    ("[{name: a, instance_type: c7i.large, arch: x86_64, device: cpu}]", "has no AMI: set `ami:` on it or cloud.amis.x86_64"),
    ("[{name: A_B, instance_type: c7i.large}]", "must be 1-40 lower-case letters"),
    ("[]", "has no machines"),
])
def test_bad_machines_are_one_line(tmp_path, machines, message):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"runtimes: [null]\nbatch: [1]\nseq: [16]\nmachines: {machines}\n")
    from embedperf.cloud.machines import load_cloud_suite
    from embedperf.spec import SpecError

    with pytest.raises(SpecError, match=None) as e:
        load_cloud_suite(suite)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_collect_without_a_run_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDPERF_CLOUD_STATE", str(tmp_path / "state"))
    one_line_error(cloud("collect", "--results", str(tmp_path)), "error: no run given and no current run")
    one_line_error(cloud("status", "some-run"), "which bucket holds run some-run?")


def test_collect_without_credentials_is_one_line(tmp_path, monkeypatch):
    drop_aws_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached: credentials come first
    one_line_error(cloud("collect", f"s3://{BUCKET}/runs/r1/", "--results", str(tmp_path)), "error: no AWS credentials")


def test_example_suites_are_valid(tmp_path):
    """Both cloud suites parse, and what each machine runs is a valid plain suite."""
    from embedperf.cloud.machines import derive_suite, load_cloud_suite
    from embedperf.spec import load_suite

    for name, n_machines in (("cloud-example.yaml", 3), ("cpu-matrix.yaml", 4)):
        suite = load_cloud_suite(REPO / "suites" / name)
        assert len(suite.machines) == n_machines
        for device in suite.devices():
            (spec,) = load_suite(derive_suite(suite.path, device, tmp_path / f"{name}-{device}.yaml"))
            assert spec.device == device
    example = load_cloud_suite(EXAMPLE)
    assert {m.arch for m in example.machines} == {"x86_64", "arm64"}
    assert {m.device for m in example.machines} == {"cpu", "cuda"}
    assert example.devices() == ["cpu", "cuda"]


def test_terraform_errors_exit_1_with_its_message(tmp_path, monkeypatch, s3_server):  # noqa: F811
    for key, value in terraform_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EMBEDPERF_CLOUD_STATE", str(tmp_path / "state"))
    suite = tmp_path / "mars.yaml"
    suite.write_text(EXAMPLE.read_text().replace("region: us-east-1", "region: mars-north-1"))
    proc = cloud("plan", str(suite), timeout=600)
    assert proc.returncode == 1, (proc.stdout[-2000:], proc.stderr)
    assert "error: terraform: invalid AWS Region: mars-north-1" in proc.stderr and "Traceback" not in proc.stderr
