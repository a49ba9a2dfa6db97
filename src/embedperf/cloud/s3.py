"""Result documents to and from S3 (or any S3-compatible store: AWS_ENDPOINT_URL), or a folder.

A destination that does not start with s3:// is a local folder, so the same calls serve a
cloud host and a local run of the bootstrap script.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from embedperf.spec import SpecError


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def parse_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/prefix/ -> ("bucket", "some/prefix/") (a non-empty prefix ends with /)."""
    if not is_s3(uri):
        raise SpecError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise SpecError(f"no bucket in {uri!r}; expected s3://bucket/prefix/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def client():
    """A boto3 S3 client; AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL point it at an S3-compatible store."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise SpecError("boto3 is not installed: pip install 'embedperf[cloud]' (or pip install boto3)") from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint,
                        config=Config(retries={"max_attempts": 8, "mode": "standard"}))


def _explain(e: Exception, uri: str) -> SpecError:
    """One line for what the user can fix: credentials, a missing bucket, access."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

    if isinstance(e, NoCredentialsError):
        return SpecError("no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                         "(or run `aws configure`)")
    if isinstance(e, NoRegionError):
        return SpecError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)")
    if isinstance(e, EndpointConnectionError):
        return SpecError(f"cannot reach the S3 endpoint for {uri}: {e}")
    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404"):
            return SpecError(f"no such bucket or object: {uri}")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            return SpecError(f"access to {uri} denied ({code}): check the AWS credentials")
        return SpecError(f"S3 error for {uri}: {code}: {e.response.get('Error', {}).get('Message', '')}")
    return SpecError(f"S3 error for {uri}: {e}")


def upload_file(path: Path, dest_uri: str) -> None:
    """Copy one file to dest_uri + its name (s3://bucket/prefix/ or a local folder)."""
    path = Path(path)
    if not is_s3(dest_uri):
        dest = Path(dest_uri)
        dest.mkdir(parents=True, exist_ok=True)
        tmp = dest / f".{path.name}.part"
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest / path.name)
        return
    bucket, prefix = parse_uri(dest_uri)
    extra = {"ContentType": "application/json"} if path.suffix == ".json" else {}
    try:
        client().upload_file(str(path), bucket, prefix + path.name, ExtraArgs=extra)
    except Exception as e:  # botocore errors -> one line
        if isinstance(e, SpecError):
            raise
        raise _explain(e, dest_uri) from None


def download_run(uri: str, dest: Path) -> Path:
    """Copy every *.json under uri (s3://bucket/prefix/ or a folder) into dest, keeping the layout."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if not is_s3(uri):
        src = Path(uri)
        if not src.is_dir():
            raise SpecError(f"no such results folder: {uri}")
        for f in src.rglob("*.json"):
            target = dest / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
        return dest
    bucket, prefix = parse_uri(uri)
    s3 = client()
    found = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if not key.endswith(".json"):
                    continue
                rel = key[len(prefix):]
                if not rel or ".." in Path(rel).parts or rel.startswith("/"):
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(target))
                found += 1
    except Exception as e:
        if isinstance(e, SpecError):
            raise
        raise _explain(e, uri) from None
    return dest


def list_keys(uri: str) -> list[tuple[str, int]]:
    """(key relative to the prefix, size) of every object under an s3:// prefix."""
    bucket, prefix = parse_uri(uri)
    out = []
    try:
        for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [(o["Key"][len(prefix):], o["Size"]) for o in page.get("Contents", [])]
    except Exception as e:
        raise _explain(e, uri) from None
    return out


def cell_documents(folder: Path) -> list[Path]:
    """The cell documents under a results folder (not run.json, nothing under work/ or forks/: a cell
    document carries its forks)."""
    return sorted(p for p in Path(folder).rglob("*.json")
                  if p.name != "run.json" and not {"work", "forks"} & set(p.relative_to(folder).parts[:-1])
                  and not p.name.startswith("."))


def upload_new(folder: Path, dest_uri: str, ledger: Path) -> list[Path]:
    """Upload the cell documents under folder that the ledger does not list yet; record them."""
    ledger = Path(ledger)
    done = set(ledger.read_text().split("\n")) if ledger.exists() else set()
    sent = []
    for path in cell_documents(folder):
        rel = str(path.relative_to(folder))
        if rel in done:
            continue
        upload_file(path, dest_uri)
        with ledger.open("a") as f:
            f.write(rel + "\n")
        sent.append(path)
    return sent
