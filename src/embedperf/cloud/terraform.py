"""Drive the `terraform` CLI on infra/terraform/aws: a copy of the configuration and the state
live under ${EMBEDPERF_CACHE}/cloud/, never in the checkout. JSON output where Terraform has it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from embedperf.paths import cache_root
from embedperf.spec import SpecError

REPO = Path(__file__).resolve().parents[3]


class TerraformError(RuntimeError):
    """Terraform ran and failed: the message is its error summaries, one per line."""


def terraform_bin() -> str:
    """The terraform executable, or one clear line saying how to get it."""
    explicit = os.environ.get("EMBEDPERF_TERRAFORM")
    found = explicit if explicit and Path(explicit).is_file() else shutil.which(explicit or "terraform")
    if not found:
        raise SpecError("terraform not found on PATH: install Terraform >= 1.5 "
                        "(https://developer.hashicorp.com/terraform/install) or set EMBEDPERF_TERRAFORM")
    return found


def config_source() -> Path:
    """infra/terraform of this checkout, or $EMBEDPERF_TERRAFORM_DIR."""
    root = Path(os.environ.get("EMBEDPERF_TERRAFORM_DIR", REPO / "infra" / "terraform"))
    if not (root / "aws" / "main.tf").is_file():
        raise SpecError(f"no Terraform configuration at {root}/aws: run from a checkout of embedperf "
                        "or set EMBEDPERF_TERRAFORM_DIR to its infra/terraform folder")
    return root


def check_credentials() -> None:
    """One clear line when no AWS credentials are configured (before Terraform prints pages)."""
    try:
        import boto3
    except ImportError:
        raise SpecError("boto3 is not installed: pip install 'embedperf[cloud]' (or pip install boto3)") from None
    if boto3.Session().get_credentials() is None:
        raise SpecError("no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                        "(or run `aws configure`)")


def state_dir() -> Path:
    return Path(os.environ.get("EMBEDPERF_CLOUD_STATE", cache_root() / "cloud"))


class Terraform:
    """One deployment: the configuration copied to <state>/terraform, the state in <state>/terraform.tfstate."""

    def __init__(self, state: Path | None = None, say=print):
        self.bin = terraform_bin()
        self.state = Path(state or state_dir())
        self.say = say
        self.workdir = self.state / "terraform" / "aws"

    def _env(self) -> dict:
        env = dict(os.environ)
        env.setdefault("TF_IN_AUTOMATION", "1")
        env["TF_DATA_DIR"] = str(self.state / "tf-data")
        return env

    def sync(self) -> None:
        """Copy the configuration (the .tf files, module and templates) into the state folder."""
        src = config_source()
        dest = self.state / "terraform"
        for path in src.rglob("*"):
            rel = path.relative_to(src)
            if any(part.startswith(".terraform") for part in rel.parts) or path.is_dir():
                continue
            if path.suffix in (".tf", ".tftpl", ".md", ".json", ".hcl") or path.name.endswith(".tfvars.example"):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)

    def run(self, *args: str, capture: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess:
        cmd = [self.bin, f"-chdir={self.workdir}", *args]
        proc = subprocess.run(cmd, capture_output=capture, text=True, env=self._env(), timeout=timeout)
        if proc.returncode != 0:
            raise TerraformError(_errors(proc.stdout or "", proc.stderr or "") or f"terraform {args[0]} failed")
        return proc

    def init(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.sync()
        self.run("init", "-input=false", "-no-color", "-upgrade=false",
                 f"-backend-config=path={self.state / 'terraform.tfstate'}")

    def write_vars(self, variables: dict, name: str = "run") -> Path:
        """<state>/<name>.tfvars.json: `run` is what is deployed (read by `down`), `plan` only planned."""
        self.state.mkdir(parents=True, exist_ok=True)
        path = self.state / f"{name}.tfvars.json"
        path.write_text(json.dumps(variables, indent=1))
        return path

    def plan(self, var_file: Path, refresh: bool = True, destroy: bool = False) -> dict:
        """`terraform plan` then `terraform show -json`: the planned changes as Terraform's JSON."""
        out = self.state / "plan.tfplan"
        args = ["plan", "-input=false", "-no-color", "-json", f"-var-file={var_file}", f"-out={out}"]
        if not refresh:
            args.append("-refresh=false")
        if destroy:
            args.append("-destroy")
        self.run(*args)
        return json.loads(self.run("show", "-json", "-no-color", str(out)).stdout)

    def apply(self, var_file: Path) -> None:
        self.run("apply", "-input=false", "-no-color", "-json", "-auto-approve", f"-var-file={var_file}")

    def destroy(self, var_file: Path) -> None:
        self.run("destroy", "-input=false", "-no-color", "-json", "-auto-approve", f"-var-file={var_file}")

    def outputs(self) -> dict:
        """`terraform output -json` as {name: value} ({} before the first apply)."""
        if not (self.state / "terraform.tfstate").exists():
            return {}
        doc = json.loads(self.run("output", "-json", "-no-color").stdout or "{}")
        return {k: v.get("value") for k, v in doc.items()}


def _errors(stdout: str, stderr: str) -> str:
    """Terraform's error diagnostics from its JSON stream (or the plain Error: lines)."""
    lines = []
    for line in stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("@level") == "error":
            diag = msg.get("diagnostic") or {}
            text = diag.get("summary") or msg.get("@message", "")
            detail = (diag.get("detail") or "").strip().splitlines()
            lines.append(text + (f": {detail[0]}" if detail else ""))
    if not lines:
        text = stderr + "\n" + stdout
        for i, line in enumerate(text.splitlines()):
            s = line.strip("│╷╵ ").strip()
            if s.startswith("Error:"):
                lines.append(s[len("Error:"):].strip())
    return "\n".join(dict.fromkeys(lines))


def summarize_plan(plan: dict) -> list[tuple[str, str, str]]:
    """(action, address, type) of each managed resource the plan changes (no-ops and data reads left out)."""
    out = []
    for rc in plan.get("resource_changes", []):
        if rc.get("mode") != "managed":
            continue
        actions = rc["change"]["actions"]
        if actions == ["no-op"]:
            continue
        action = "replace" if set(actions) == {"create", "delete"} else actions[0]
        out.append((action, rc["address"], rc["type"]))
    return out
