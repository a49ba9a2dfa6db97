"""Helpers for the infra tests: an S3-compatible server on 127.0.0.1 (moto), the terraform
binary and an offline AWS provider, checkov, and `embedperf cloud` as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import IN_CI, REPO, embedperf
from embedperf.results.store import CELL_SCHEMA

TERRAFORM_DIR = REPO / "infra" / "terraform"
BOOTSTRAP = REPO / "src" / "embedperf" / "cloud" / "bootstrap.sh"
BUCKET = "embedperf-test-results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3/EC2/IAM/STS server on 127.0.0.1; yields the environment that points AWS clients at it."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install 'moto[server]')")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server._server.server_address[:2]  # the bound address
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(env)  # for boto3 in this process, and inherited by the CLI's subprocesses
    try:
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def drop_aws_credentials(monkeypatch, tmp_path: Path) -> None:
    """Make boto3 (here and in the CLI's subprocess) find no credentials at all."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# --- terraform ----------------------------------------------------------------------------

def terraform() -> str:
    found = shutil.which("terraform")
    if not found:
        pytest.skip("the terraform binary is not on PATH (install Terraform >= 1.5 to run fmt/validate/plan)")
    return found


def provider_mirror() -> Path | None:
    """A filesystem mirror that holds hashicorp/aws (registry.terraform.io is not reachable offline)."""
    candidates = [os.environ.get("EMBEDPERF_TF_PLUGIN_MIRROR"), "/opt/tf-plugins",
                  str(Path.home() / ".terraform.d" / "plugins"),
                  str(Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "terraform" / "plugins")]
    for c in candidates:
        if c and (Path(c) / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return Path(c)
    return None


def terraform_env(tmp_path: Path) -> dict:
    """TF_CLI_CONFIG_FILE that installs hashicorp/aws from the local mirror, or skip."""
    terraform()
    mirror = provider_mirror()
    if mirror is None:
        pytest.skip("no offline copy of the hashicorp/aws provider (registry.terraform.io is unreachable): set "
                    "EMBEDPERF_TF_PLUGIN_MIRROR to a filesystem mirror holding registry.terraform.io/hashicorp/aws")
    rc = tmp_path / "terraform.rc"
    rc.write_text('provider_installation {\n  filesystem_mirror {\n    path    = "%s"\n'
                  '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
                  '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n' % mirror)
    return {"TF_CLI_CONFIG_FILE": str(rc), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}


def run_terraform(args: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([terraform(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


# --- checkov ------------------------------------------------------------------------------

def checkov() -> str:
    """checkov from $EMBEDPERF_CHECKOV, PATH, or its own venv under the cache (`make infra-tools`)."""
    from embedperf.paths import cache_root

    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embedperf"
    for c in (os.environ.get("EMBEDPERF_CHECKOV"), shutil.which("checkov"),
              str(cache_root() / "tools" / "checkov" / "bin" / "checkov"),
              str(xdg / "tools" / "checkov" / "bin" / "checkov")):
        if c and Path(c).is_file():
            return c
    message = ("checkov is not installed: `make infra-tools` puts it in its own venv under "
               "${XDG_CACHE_HOME:-~/.cache}/embedperf/tools/checkov")
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# --- the CLI ------------------------------------------------------------------------------

def cloud(*args: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """`embedperf cloud ARGS`, as a user runs it."""
    return embedperf("cloud", *args, timeout=timeout, env=env)


def cell_files(folder: Path) -> list[Path]:
    out = []
    for p in folder.rglob("*.json"):
        try:
            if json.loads(p.read_text()).get("schema") == CELL_SCHEMA:
                out.append(p)
        except (OSError, json.JSONDecodeError):
            pass
    return sorted(out)
