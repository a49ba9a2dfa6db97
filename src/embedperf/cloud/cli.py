"""`embedperf cloud`: plan, up, status, collect and down a suite's machines (docs/cloud.md).

Terraform (infra/terraform/aws) creates the bucket and one instance per machine; each machine
runs bootstrap.sh and uploads its result documents; `collect` brings them home.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from embedperf.spec import SpecError

cloud_app = typer.Typer(help="Run a suite on cloud machines (Terraform + an S3 bucket): plan, up, status, "
                             "collect, down. See docs/cloud.md.", no_args_is_help=True,
                        add_completion=False)

BOOTSTRAP = Path(__file__).with_name("bootstrap.sh")


def _say(msg: str = "") -> None:
    print(msg, flush=True)


def _new_run_id() -> str:
    return "cloud-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _terraform(say=_say):
    """A Terraform driver, or exit 2 with one line (no terraform)."""
    from embedperf.cloud.terraform import Terraform

    return Terraform(say=say)


class CloudFailure(RuntimeError):
    """Terraform (or the cloud) failed: its messages on stderr, exit code 1 (the main CLI shows it)."""

    exit_code = 1

    def show(self, file=None) -> None:
        print(str(self), file=file or sys.stderr)


def _tf_call(fn, *args, **kwargs):
    """Run a Terraform step; its errors become `error: terraform: ...` lines and exit 1."""
    from embedperf.cloud.terraform import TerraformError

    try:
        return fn(*args, **kwargs)
    except TerraformError as e:
        lines = str(e).splitlines() or ["failed"]
        raise CloudFailure("\n".join(f"error: terraform: {line}" for line in lines)) from None
    except subprocess.TimeoutExpired:
        raise CloudFailure("error: terraform timed out") from None


def _current_file() -> Path:
    from embedperf.cloud.terraform import state_dir

    return state_dir() / "current-run.json"


def _current() -> dict:
    path = _current_file()
    return json.loads(path.read_text()) if path.is_file() else {}


def build_package(dest: Path, say=_say) -> Path:
    """A source archive of the current commit (git archive HEAD): what the machines install and build."""
    from embedperf.cloud.terraform import REPO

    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        head = None
    if head is None or head.returncode != 0 or not head.stdout.strip():
        raise SpecError(f"{REPO} is not a git checkout with a commit: pass --package FILE "
                        "(a source archive or wheel of embedperf)")
    sha = head.stdout.strip()[:12]
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"embedperf-{sha}.tar.gz"
    if not out.exists():
        subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar.gz", f"--prefix=embedperf-{sha}/",
                        "-o", str(out), "HEAD"], check=True, timeout=300)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=30).stdout.strip()
    if dirty:
        say(f"note: the package is commit {sha}; uncommitted changes are not in it")
    return out


def _tf_vars(suite, run_id: str, package: Path | None, suite_path: Path | None) -> dict:
    cloud = suite.cloud
    variables = {
        "region": suite.region,
        "run_id": run_id,
        "machines": {m.name: m.tf() for m in suite.machines},
        "package_path": str(package) if package else None,
        "suite_path": str(suite_path) if suite_path else None,
        "bootstrap_script_path": str(BOOTSTRAP),
        "enable_ssm": bool(cloud.get("enable_ssm", False)),
        "associate_public_ip": bool(cloud.get("associate_public_ip", True)),
        "tags": {str(k): str(v) for k, v in (cloud.get("tags") or {}).items()},
    }
    for key, var in (("bucket", "bucket_name"), ("vpc_id", "vpc_id"), ("subnet_id", "subnet_id")):
        if cloud.get(key):
            variables[var] = str(cloud[key])
    return variables


def print_estimate(suite, prices: dict) -> None:
    """The machines, their estimated and maximum hours and, with prices, the cost."""
    from embedperf.cloud.machines import cell_count, estimate_hours, price_of

    rows = []
    total_est = total_max = 0.0
    priced = True
    for m in suite.machines:
        cells = sum(cell_count(suite.doc, d) for d in m.devices() if d in suite.devices())
        est = estimate_hours(suite, m)
        usd, basis = price_of(m, prices)
        if usd is None:
            priced = False
            cost = "?"
        else:
            total_est += usd * est
            total_max += usd * m.hours
            cost = f"${usd * est:.2f} (max ${usd * m.hours:.2f}, {basis} ${usd:.4f}/h)"
        rows.append((m.name, m.instance_type, m.arch, m.device, "spot" if m.spot else "on-demand", str(cells),
                     f"{est:.2f}", f"{m.hours:g}", cost))
    head = ("machine", "instance type", "arch", "device", "market", "cells", "est. hours", "limit h", "est. cost")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        _say("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    hours = sum(estimate_hours(suite, m) for m in suite.machines)
    line = f"{len(suite.machines)} machine(s), {hours:.2f} estimated machine-hours (at most " \
           f"{sum(m.hours for m in suite.machines):g}: each machine terminates itself at its limit)"
    _say(line)
    if priced and prices:
        _say(f"estimated cost: ${total_est:.2f} (at most ${total_max:.2f}), compute only; storage and transfer extra")
    elif prices:
        missing = sorted({m.instance_type for m in suite.machines if price_of(m, prices)[0] is None})
        _say(f"estimated cost: unknown for {', '.join(missing)} (not in the price table)")
    else:
        _say("estimated cost: give a price table (--prices FILE or cloud.prices) to see it")


def _print_changes(changes: list[tuple[str, str, str]]) -> None:
    from collections import Counter

    counts = Counter(a for a, _, _ in changes)
    _say("Terraform plan: " + (", ".join(f"{n} to {a}" for a, n in sorted(counts.items())) or "no changes"))
    for action, address, _ in changes:
        _say(f"  {action:8s} {address}")


def _load(suite_path: Path, prices_path: Optional[Path], need_amis: bool = True):
    from embedperf.cloud.machines import load_cloud_suite, load_prices

    suite = load_cloud_suite(suite_path, need_amis=need_amis)
    return suite, load_prices(prices_path, suite)


@cloud_app.command()
def plan(
    suite: Path = typer.Argument(..., help="Suite YAML with a `machines:` list."),
    prices: Optional[Path] = typer.Option(None, help="Price table (YAML/JSON): instance type -> USD/hour, or "
                                          "{on_demand: x, spot: y}."),
    run_id: Optional[str] = typer.Option(None, help="Run id to plan for (default: a new one)."),
    package: Optional[Path] = typer.Option(None, help="Package to upload (default: git archive of HEAD)."),
    refresh: bool = typer.Option(True, help="Let Terraform refresh the state (--no-refresh: -refresh=false)."),
) -> None:
    """Print the machines, estimated hours and cost, and what Terraform would create."""
    from embedperf.cloud.terraform import check_credentials, terraform_bin

    terraform_bin()  # refuse first, before anything else, when Terraform is missing
    cs, table = _load(suite, prices)
    print_estimate(cs, table)
    check_credentials()
    tf = _terraform()
    pkg = package or build_package(tf.state / "packages")
    var_file = tf.write_vars(_tf_vars(cs, run_id or _new_run_id(), pkg.resolve(), suite.resolve()), "plan")
    _tf_call(tf.init)
    from embedperf.cloud.terraform import summarize_plan

    _print_changes(summarize_plan(_tf_call(tf.plan, var_file, refresh=refresh)))


@cloud_app.command()
def up(
    suite: Path = typer.Argument(..., help="Suite YAML with a `machines:` list."),
    prices: Optional[Path] = typer.Option(None, help="Price table for the cost estimate."),
    run_id: Optional[str] = typer.Option(None, help="Run id (default: a new one)."),
    package: Optional[Path] = typer.Option(None, help="Package to upload (default: git archive of HEAD)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before creating the machines."),
    replace: bool = typer.Option(False, help="Replace the machines of another run that are still up."),
) -> None:
    """Upload the package and suite, and start one machine per entry of `machines:`."""
    from embedperf.cloud.terraform import check_credentials, summarize_plan, terraform_bin

    terraform_bin()
    cs, table = _load(suite, prices)
    check_credentials()
    current = _current()
    run_id = run_id or _new_run_id()
    if current.get("instance_ids") and current.get("run_id") != run_id and not replace:
        raise SpecError(f"run {current['run_id']} still has machines up: `embedperf cloud down` first, "
                        "or pass --replace")
    print_estimate(cs, table)
    tf = _terraform()
    pkg = package or build_package(tf.state / "packages")
    if not pkg.is_file():
        raise SpecError(f"package {pkg} does not exist")
    var_file = tf.write_vars(_tf_vars(cs, run_id, pkg.resolve(), suite.resolve()))
    _tf_call(tf.init)
    _print_changes(summarize_plan(_tf_call(tf.plan, var_file)))
    if not yes and not typer.confirm("Create these resources (they cost money until the machines terminate)?"):
        raise typer.Abort()
    _tf_call(tf.apply, var_file)
    out = _tf_call(tf.outputs)
    record = {"run_id": run_id, "bucket": out.get("bucket_name"), "results_uri": out.get("results_uri"),
              "region": cs.region, "instance_ids": out.get("instance_ids") or {},
              "machines": [m.name for m in cs.machines], "suite": str(suite.resolve()),
              "started": dt.datetime.now(dt.timezone.utc).isoformat()}
    _current_file().write_text(json.dumps(record, indent=1))
    _say(f"run {run_id}: {len(record['instance_ids'])} machine(s) started")
    for name, iid in record["instance_ids"].items():
        _say(f"  {name}: {iid}")
    _say(f"results: {record['results_uri']}")
    _say("next: `embedperf cloud status`, then `embedperf cloud collect` and `embedperf cloud down`")


def _run_record(run: Optional[str], bucket: Optional[str]) -> tuple[str, str]:
    """(run id, results URI) from an s3:// URI, a run id (+ --bucket), or the current run."""
    if run and run.startswith("s3://"):
        uri = run if run.endswith("/") else run + "/"
        parts = uri[len("s3://"):].rstrip("/").split("/")
        rid = parts[2] if len(parts) >= 3 and parts[1] == "runs" else parts[-1]
        if len(parts) == 3 and parts[1] == "runs":
            uri += "results/"
        return rid, uri
    current = _current()
    rid = run or current.get("run_id")
    if not rid:
        raise SpecError("no run given and no current run: pass RUN_ID (with --bucket) or s3://BUCKET/runs/RUN_ID/")
    bucket = bucket or (current.get("bucket") if current.get("run_id") == rid else None)
    if not bucket:
        raise SpecError(f"which bucket holds run {rid}? pass --bucket NAME or s3://BUCKET/runs/{rid}/")
    return rid, f"s3://{bucket}/runs/{rid}/results/"


@cloud_app.command()
def status(
    run: Optional[str] = typer.Argument(None, help="RUN_ID or s3://BUCKET/runs/RUN_ID/ (default: the current run)."),
    bucket: Optional[str] = typer.Option(None, help="Bucket of RUN_ID."),
) -> None:
    """Each machine's instance state and the documents it has uploaded so far."""
    from embedperf.cloud import s3

    rid, uri = _run_record(run, bucket)
    current = _current()
    ids = current.get("instance_ids", {}) if current.get("run_id") == rid else {}
    states = _instance_states(list(ids.values()), current.get("region"))
    per_machine: dict[str, dict] = {}
    for key, _size in s3.list_keys(uri):
        machine, _, name = key.partition("/")
        entry = per_machine.setdefault(machine, {"cells": 0, "status": None})
        if name == "host-status.json":
            entry["status"] = _read_status(uri + key)
        elif name.endswith(".json"):
            entry["cells"] += 1
    _say(f"run {rid}: {uri}")
    names = list(dict.fromkeys([*ids, *per_machine, *current.get("machines", [])]))
    if not names:
        _say("  nothing uploaded yet")
    for name in names:
        entry = per_machine.get(name, {"cells": 0, "status": None})
        host = entry["status"] or {}
        iid = ids.get(name, "-")
        _say(f"  {name:16s} {iid:20s} {states.get(iid, 'unknown'):12s} {entry['cells']:4d} document(s)"
             f"  bootstrap: {host.get('status', 'not started')}" + (f" ({host['error']})" if host.get("error") else ""))


def _read_status(uri: str) -> dict:
    import tempfile

    from embedperf.cloud import s3

    bucket, key = uri[len("s3://"):].split("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "status.json"
        try:
            s3.client().download_file(bucket, key, str(path))
            return json.loads(path.read_text())
        except Exception:
            return {}


def _instance_states(ids: list[str], region: Optional[str]) -> dict[str, str]:
    if not ids:
        return {}
    try:
        import boto3

        ec2 = boto3.client("ec2", region_name=region) if region else boto3.client("ec2")
        out = {}
        for res in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
            for inst in res["Instances"]:
                out[inst["InstanceId"]] = inst["State"]["Name"]
        return out
    except Exception:  # terminated long ago, no ec2 permission: the documents still tell
        return {}


@cloud_app.command()
def collect(
    run: Optional[str] = typer.Argument(None, help="RUN_ID or s3://BUCKET/runs/RUN_ID/ (default: the current run)."),
    bucket: Optional[str] = typer.Option(None, help="Bucket of RUN_ID."),
    results: Path = typer.Option(Path("results"), help="Results root: the run lands in RESULTS/RUN_ID/."),
) -> None:
    """Download the run's result documents into a local results folder (one sub-folder per machine)."""
    from embedperf.cloud import s3
    from embedperf.results.store import load_cells

    rid, uri = _run_record(run, bucket)
    dest = s3.download_run(uri, results / rid)
    cells = load_cells([dest])
    _say(f"collected {len(cells)} cell document(s) of run {rid} into {dest}")
    _say(f"next: embedperf report {dest}")


@cloud_app.command()
def down(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    all_: bool = typer.Option(False, "--all", help="Also destroy the bucket and its key (only if the bucket is "
                              "empty, unless force_destroy_bucket is set)."),
) -> None:
    """Terminate the run's machines and remove their roles (the bucket and its results stay)."""
    from embedperf.cloud.terraform import check_credentials, terraform_bin

    terraform_bin()
    check_credentials()
    tf = _terraform()
    var_path = tf.state / "run.tfvars.json"
    if not (tf.state / "terraform.tfstate").exists() or not var_path.exists():
        raise SpecError(f"nothing to take down: no deployment under {tf.state}")
    variables = json.loads(var_path.read_text())
    variables.update({"machines": {}, "package_path": None, "suite_path": None})
    var_file = tf.write_vars(variables, "down")
    what = "the bucket, its key and every machine" if all_ else "every machine of the run (the bucket stays)"
    if not yes and not typer.confirm(f"Destroy {what}?"):
        raise typer.Abort()
    _tf_call(tf.init)
    _tf_call(tf.destroy if all_ else tf.apply, var_file)
    current = _current()
    if current:
        current["instance_ids"] = {}
        _current_file().write_text(json.dumps(current, indent=1))
    _say(f"down: {what} destroyed")
