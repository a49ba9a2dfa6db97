"""The cloud part of a suite: its `machines:` list and `cloud:` settings, prices and estimates.

A suite for the cloud is an ordinary suite plus two keys:

    machines:                       # one instance per entry
      - {name: x86, instance_type: c7i.2xlarge, arch: x86_64, device: cpu}
      - {name: gpu, instance_type: g6.xlarge, arch: x86_64, device: cuda, spot: true, hours: 2}
    cloud:                          # optional
      region: us-east-1
      amis: {x86_64: ami-..., arm64: ami-..., cuda: ami-...}   # or `ami:` per machine
      devices: [cpu, cuda]          # which devices' cells the run covers (default: the suite's device)
      max_hours: 3                  # hard time limit of a machine without `hours`
      prices: {c7i.2xlarge: 0.357, g6.xlarge: {on_demand: 0.805, spot: 0.35}}

Everything is checked here with one-line errors (SpecError), before Terraform is called.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from embedperf.spec import SpecError, reject_unknown

MACHINE_KEYS = {"name", "instance_type", "arch", "device", "ami", "spot", "spot_max_price", "hours",
                "root_volume_gb"}
CLOUD_KEYS = {"region", "amis", "devices", "max_hours", "root_volume_gb", "prices", "bucket", "vpc_id", "subnet_id",
              "enable_ssm", "associate_public_ip", "tags"}
ARCHES = ("x86_64", "arm64")
DEVICES = ("cpu", "cuda")
SETUP_HOURS = 0.5  # install PyTorch & co, build the native runners, prepare the exports
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
AMI_RE = re.compile(r"^ami-[0-9a-f]{8,17}$")


@dataclass
class Machine:
    name: str
    instance_type: str
    arch: str
    device: str
    ami: str | None = None
    spot: bool = False
    spot_max_price: str | None = None
    hours: float = 3.0  # the hard time limit on the machine
    root_volume_gb: int = 100

    def devices(self) -> tuple[str, ...]:
        """What the machine can run: a GPU host runs the cpu cells too."""
        return ("cpu", "cuda") if self.device == "cuda" else ("cpu",)

    def tf(self) -> dict:
        """The machine as the Terraform root configuration's `machines` map value."""
        return {"instance_type": self.instance_type, "arch": self.arch, "device": self.device, "ami_id": self.ami,
                "spot": self.spot, "spot_max_price": self.spot_max_price, "max_hours": self.hours,
                "root_volume_gb": self.root_volume_gb}


@dataclass
class CloudSuite:
    path: Path
    doc: dict
    machines: list[Machine]
    cloud: dict = field(default_factory=dict)

    @property
    def region(self) -> str:
        return self.cloud.get("region", "us-east-1")

    def devices(self) -> list[str]:
        """The devices whose cells the run covers."""
        return suite_devices(self.doc)


def _read(path: Path) -> dict:
    from embedperf.spec import read_suite

    return read_suite(path)


def suite_devices(doc: dict) -> list[str]:
    cloud = doc.get("cloud") or {}
    devices = cloud.get("devices") or [doc.get("device", "cpu")]
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    out = []
    for d in devices:
        base = "cuda" if str(d).startswith("cuda") else str(d)
        if base not in DEVICES:
            raise SpecError(f"cloud.devices: unknown device {d!r}; choose from: {', '.join(DEVICES)}")
        if base not in out:
            out.append(base)
    return out


def load_cloud_suite(path: Path, need_amis: bool = True) -> CloudSuite:
    """Read the suite's machines and cloud settings; every problem is one SpecError line."""
    path = Path(path)
    doc = _read(path)
    cloud = doc.get("cloud") or {}
    if not isinstance(cloud, dict):
        raise SpecError(f"suite {path}: cloud must be a mapping ({', '.join(sorted(CLOUD_KEYS))})")
    reject_unknown(cloud, CLOUD_KEYS, f"suite {path}: cloud")
    entries = doc.get("machines")
    if not entries or not isinstance(entries, list):
        raise SpecError(f"suite {path} has no machines: add a `machines:` list of "
                        "{name, instance_type, arch, device} to run it in the cloud")
    amis = cloud.get("amis") or {}
    default_hours = float(cloud.get("max_hours", 3))
    default_volume = int(cloud.get("root_volume_gb", 100))
    machines: list[Machine] = []
    for i, m in enumerate(entries):
        where = f"suite {path}: machines[{i}]"
        if not isinstance(m, dict):
            raise SpecError(f"{where} must be a mapping with name, instance_type, arch, device")
        reject_unknown(m, MACHINE_KEYS, where)
        for key in ("name", "instance_type"):
            if not m.get(key):
                raise SpecError(f"{where} has no {key}")
        name = str(m["name"])
        if not NAME_RE.match(name):
            raise SpecError(f"{where}: name {name!r} must be 1-40 lower-case letters, digits or '-'")
        if any(x.name == name for x in machines):
            raise SpecError(f"{where}: machine name {name!r} is used twice")
        arch = m.get("arch", "x86_64")
        if arch not in ARCHES:
            raise SpecError(f"{where}: arch {arch!r}; choose from: {', '.join(ARCHES)}")
        device = m.get("device", "cpu")
        if device not in DEVICES:
            raise SpecError(f"{where}: device {device!r}; choose from: {', '.join(DEVICES)}")
        itype = str(m["instance_type"])
        if device == "cuda" and not re.match(r"^(g|p)[0-9]", itype):
            raise SpecError(f"{where}: device cuda needs a GPU instance type (g*, p*), not {itype}")
        ami = m.get("ami") or amis.get("cuda" if device == "cuda" else arch)
        if device == "cuda" and not ami:
            ami = amis.get(f"cuda-{arch}")
        if ami is not None and not AMI_RE.match(str(ami)):
            raise SpecError(f"{where}: ami {ami!r} does not look like ami-0123456789abcdef0")
        if need_amis and not ami:
            key = "cuda" if device == "cuda" else arch
            raise SpecError(f"{where} ({name}) has no AMI: set `ami:` on it or cloud.amis.{key}"
                            + (" (an image with the NVIDIA driver)" if device == "cuda" else ""))
        hours = float(m.get("hours", default_hours))
        if not 0 < hours <= 48:
            raise SpecError(f"{where}: hours must be in (0, 48], got {hours}")
        volume = int(m.get("root_volume_gb", default_volume))
        if volume < 30:
            raise SpecError(f"{where}: root_volume_gb must be at least 30")
        price = m.get("spot_max_price")
        machines.append(Machine(name, itype, arch, device, ami, bool(m.get("spot", False)),
                                None if price is None else str(price), hours, volume))
    suite_devices(doc)
    return CloudSuite(path, doc, machines, cloud)


# --- estimates ------------------------------------------------------------------------------

def _count(value) -> int:
    if value is None:
        return 1
    if isinstance(value, str):
        return len([v for v in value.split(",") if v.strip()])
    if isinstance(value, list):
        return len(value)
    return 1


def cell_count(doc: dict, device: str) -> int:
    """Cells of the suite for one device (models x runtimes x batch x seq; `all` = every real runtime)."""
    from embedperf.runners.registry import ALL, RUNTIMES

    runtimes = doc.get("runtimes") or []
    names = runtimes.split(",") if isinstance(runtimes, str) else ["null" if r is None else str(r) for r in runtimes]
    expanded = []
    for n in (x.strip() for x in names):
        for r in (ALL if n == "all" else (n,)):
            if r not in expanded and (r not in RUNTIMES or device in RUNTIMES[r].devices):
                expanded.append(r)
    models = len(doc.get("models") or [doc.get("model")])
    return models * len(expanded) * _count(doc.get("batch")) * _count(doc.get("seq"))


def estimate_hours(suite: CloudSuite, machine: Machine) -> float:
    """Rough wall time of one machine: setup, then per cell warm-up + timed loop + overhead, per
    model x runtime a load and export; never more than the machine's hard limit."""
    timing = suite.doc.get("timing") or {}
    per_cell = float(timing.get("min_seconds", 2.0)) + float(timing.get("warmup", 3)) * 0.5 + 10.0
    seconds = 0.0
    for device in machine.devices():
        if device not in suite.devices():
            continue
        cells = cell_count(suite.doc, device)
        groups = max(1, cells // max(1, _count(suite.doc.get("batch")) * _count(suite.doc.get("seq"))))
        seconds += cells * per_cell + groups * 90.0
    return round(min(machine.hours, SETUP_HOURS + seconds / 3600.0), 2)


def load_prices(path: Path | None, suite: CloudSuite) -> dict[str, dict]:
    """instance_type -> {"on_demand": usd/h, "spot": usd/h?} from --prices FILE and/or cloud.prices."""
    table: dict = {}
    sources = [suite.cloud.get("prices") or {}]
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"price table {path} does not exist")
        try:
            doc = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except yaml.YAMLError as e:
            raise SpecError(f"price table {path} is not valid YAML/JSON: {str(e).splitlines()[0]}") from None
        if not isinstance(doc, dict):
            raise SpecError(f"price table {path} must map instance types to USD per hour")
        sources.append(doc.get("prices", doc) if isinstance(doc.get("prices"), dict) else doc)
    for src in sources:
        for itype, value in src.items():
            if isinstance(value, (int, float)):
                table[str(itype)] = {"on_demand": float(value)}
            elif isinstance(value, dict) and set(value) <= {"on_demand", "spot"} and value:
                table[str(itype)] = {k: float(v) for k, v in value.items()}
            else:
                raise SpecError(f"price of {itype}: a number (USD/hour) or {{on_demand: x, spot: y}}, got {value!r}")
    return table


def price_of(machine: Machine, prices: dict[str, dict]) -> tuple[float | None, str]:
    """(USD per hour, basis) for the machine's market; spot without a spot price uses on-demand (an upper bound)."""
    entry = prices.get(machine.instance_type)
    if not entry:
        return None, "no price"
    if machine.spot and "spot" in entry:
        return entry["spot"], "spot"
    if "on_demand" in entry:
        return entry["on_demand"], "on-demand" + (" (spot price unknown)" if machine.spot else "")
    return entry.get("spot"), "spot"


def derive_suite(path: Path, device: str, out: Path) -> Path:
    """The plain suite one machine runs for one device: the cloud keys dropped, `device` set."""
    doc = _read(path)
    doc.pop("machines", None)
    doc.pop("cloud", None)
    doc["device"] = device
    Path(out).write_text(yaml.safe_dump(doc, sort_keys=False))
    return Path(out)


def as_dicts(machines: list[Machine]) -> list[dict]:
    return [asdict(m) for m in machines]
