"""The front door under fuzz (issue #13, item 7): generated command lines and suite files go through the
CLI's parsing and validation (`run --dry-run`: no model runs) and each ends accepted, or rejected with
exactly one error line and exit 2 (5: nothing to report or compare), never a traceback.

Each example checks a batch of command lines (hypothesis's own cost per example is then shared); the
counts are printed. EMBEDPERF_FUZZ_SCALE multiplies them (e.g. 10 for a long local session).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_support import Result, error_lines, invoke

SCALE = float(os.environ.get("EMBEDPERF_FUZZ_SCALE", "1"))
BATCH = 10  # command lines (or suite files) per example
ARGV_LINES = int(7000 * SCALE)
SUITE_FILES = int(3000 * SCALE)
SETTINGS = dict(deadline=None, database=None, print_blob=True, suppress_health_check=list(HealthCheck))


def _command(*path: str):
    """The click command the console script runs, for the real option names."""
    import typer

    from embedperf.cli import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def _options(*path: str) -> tuple[list[str], list[str]]:
    """(options that take a value, flags) of a command."""
    values, flags = set(), set()
    for p in _command(*path).params:
        names = {o for o in [*p.opts, *p.secondary_opts] if o.startswith("-") and o != "--help"}
        (flags if getattr(p, "is_flag", False) else values).update(names)
    return sorted(values), sorted(flags)


def _names() -> list[str]:
    from embedperf.models.registry import MODELS, SOURCES
    from embedperf.runners.registry import RUNTIMES

    return [*MODELS, *(m.slug for m in MODELS.values()), *RUNTIMES, *SOURCES, "all", "ALL", "ort", "onnxruntime",
            "Torch", "all-minilm-l6-v2", "latency", "throughput", "offline", "cpu", "cuda", "cuda:0", "cuda:x",
            "tpu", "fp32", "fp16", "bf16", "int8", "crash", "hang", "exit", "oom", "markdown", "json", "html"]


NAMES = _names()
# words a user might type: numbers of every kind, lists, paths (relative: the test runs in an empty folder,
# and never "/" or "..", so that `report` cannot walk the whole disk), junk
JUNK = ["", " ", ",", ",,", "1,8", "16,128", "1, 8", "0", "-1", "+3", "1e3", "1_000", "nan", "inf", "-inf",
        "1.5", "0.0", "1e-9", "-0.0", "1e308", "0x10", "٣", "99999999999999999999", "true", "no", "--", "-", "=",
        "suite.yaml", "broken.yaml", "empty", "missing", "results", "a-file", "~", "é", "\t", "'", '"', "{", "[1]",
        "null", "a\nb", "-x", "--=", "s3://bucket/prefix/"]
# free text (never "/" or NUL, which no argv holds), for what the word lists do not think of
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
               max_size=10).filter(lambda t: ".." not in t and not t.startswith("s3:"))

LISTS = ["1", "8", "1,8", "4", "16", "24", "16,128", "128,512", "1,2,4", "0", "-1", "1,x", "100000", "2"]
SECONDS = ["0", "0.5", "1", "2", "5", "60", "-1", "nan", "inf"]
SMALL = ["1", "2", "3", "4", "8", "0", "-1", "64"]
# values close to valid for each option, so that many command lines get past the parser
PLAUSIBLE = {
    "--model": NAMES[:12] + ["BGE-M3", "gpt2", "minilm"], "-m": NAMES[:6],
    "--runtimes": ["null", "torch", "all", "null,torch", "ort", "NULL", "onnxruntime-python,openvino", "null,,"],
    "-r": ["null", "candle"], "--batch": LISTS, "-b": LISTS, "--seq": LISTS, "-s": LISTS,
    "--source": ["hub", "local", "package", "twin", "tiny", "s3"],
    "--scenario": ["latency", "throughput", "offline"], "--device": ["cpu", "cuda", "cuda:0", "tpu"],
    "--precision": ["fp32", "fp16", "bf16", "int8"], "--threads": SMALL, "--forks": SMALL, "--warmup": SMALL,
    "--min-calls": SMALL, "--corpus-items": SMALL + ["1024"], "--fault-at-shape": SMALL,
    "--truncate-dim": ["128", "256", "300", "768"], "--min-seconds": SECONDS, "--max-seconds": SECONDS,
    "--grace": SECONDS, "--load-timeout": SECONDS, "--target-ci": ["0", "0.01", "0.5", "1", "-0.1"],
    "--fault": ["crash", "hang", "exit", "oom", "boom"],
    "--suite": ["suite.yaml", "broken.yaml", "missing.yaml", "empty"],
    "--results": ["results", "a-file", "a-file/sub", "empty"], "--images": ["empty", "missing", "a-file"],
    "--upload": ["s3://bucket/prefix/", "bucket"], "--memory-limit-mb": ["100", "0", "-5", "inf"],
    "--resume": ["20250101-000000-abcd", "x"], "--path": ["empty", "missing"], "--revision": ["main", ""],
    # report, compare, cache prune
    "--format": ["markdown", "json", "html"], "-f": ["json", "csv"], "--html": ["out.html", "empty"],
    "--markdown-out": ["out.md", "empty"], "--threshold": ["0.05", "0", "1", "-1", "nan"],
    "--fail-above": ["5", "0", "-3", "nan", "inf"],
}


def _groups(*command: str) -> list[list[str]]:
    """Every token group of a command: an option with each plausible value and junk, `--opt=value`,
    an option missing its value, a flag, a stray word."""
    valued, flags = _options(*command)
    groups = [[f] for f in flags] * 3
    for o in valued:
        values = PLAUSIBLE.get(o, []) * 3 + JUNK
        groups += [[o, v] for v in values]
        if o.startswith("--"):
            groups += [[f"{o}={v}"] for v in values[:4]]
        groups.append([o])
    return groups + [[w] for w in JUNK]


def _tail(*command: str, max_size: int):
    group = st.sampled_from(_groups(*command))
    return st.lists(st.one_of(*[group] * 9, TEXT.map(lambda t: [t])), max_size=max_size)


ARGUMENT = st.sampled_from(["empty", "results", "missing", ".", "a-file", "suite.yaml", *JUNK]).map(lambda a: [a])
# `run` always gets --dry-run first, where no junk can take it as its value; the other commands read,
# never write (the cache is an empty temporary one; report/compare find no cells, so write no report)
COMMAND_LINE = st.one_of(
    *[st.tuples(st.just(["run", "--dry-run"]), _tail("run", max_size=6))] * 6,
    st.tuples(st.just(["report"]), st.tuples(ARGUMENT, _tail("report", max_size=3)).map(lambda t: [t[0], *t[1]])),
    st.tuples(st.just(["compare"]), st.tuples(ARGUMENT, ARGUMENT, _tail("compare", max_size=3)).map(
        lambda t: [t[0], t[1], *t[2]])),
    st.tuples(st.just(["cache", "prune"]), st.tuples(st.lists(ARGUMENT, max_size=2),
                                                     _tail("cache", "prune", max_size=2)).map(lambda t: [*t[0], *t[1]])),
    st.tuples(st.sampled_from([["cache", "ls"], ["models"], ["runtimes"], ["reprot"], [], ["cache"], ["cloud"]]),
              st.lists(ARGUMENT, max_size=1)),
).map(lambda c: [*c[0], *(token for group in c[1] for token in group)])


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """An empty working folder and cache; anything that would measure, prepare or calibrate fails loudly."""
    import embedperf.cli
    import embedperf.measure.calibrate

    def forbidden(*args, **kwargs):
        raise AssertionError("the fuzz reached real work: a dry run must prepare and measure nothing")

    monkeypatch.setattr(embedperf.cli, "_measure", forbidden)
    monkeypatch.setattr(embedperf.measure.calibrate, "load_or_calibrate", forbidden)
    monkeypatch.setenv("EMBEDPERF_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "suite.yaml").write_text("runtimes: [null]\nbatch: [1]\nseq: [16]\n")
    (tmp_path / "broken.yaml").write_text("runtimes: [null\n")
    return tmp_path


def judge(result: Result, argv: list[str]) -> str:
    """accepted, or rejected in one line; anything else fails the test."""
    assert "Traceback" not in result.stderr, (argv, result.stderr)
    if result.returncode == 0:
        return "accepted"
    assert result.returncode in (2, 5), (argv, result.returncode, result.stderr[-2000:])
    errors = error_lines(result.stderr)
    assert len(errors) == 1, (argv, result.stderr)
    rest = [line for line in result.stderr.splitlines() if line.strip() and line not in errors]
    assert all(line.startswith(("Usage:", "Try '")) for line in rest), (argv, result.stderr)
    return "rejected"


def test_generated_command_lines(sandbox, capsys):
    seen = {"accepted": 0, "rejected": 0}

    @settings(max_examples=-(-ARGV_LINES // BATCH), **SETTINGS)
    @given(st.lists(COMMAND_LINE, min_size=BATCH, max_size=BATCH))
    def batch(command_lines):
        for argv in command_lines:
            seen[judge(invoke(*argv), argv)] += 1

    batch()
    with capsys.disabled():
        print(f"\nfuzz: {sum(seen.values())} command lines ({seen['accepted']} accepted, "
              f"{seen['rejected']} rejected in one line)")
    assert sum(seen.values()) >= ARGV_LINES and seen["accepted"] and seen["rejected"]


# -- suite files ------------------------------------------------------------------------------
def _suite_docs():
    from embedperf.models.registry import MODELS
    from embedperf.runners.registry import RUNTIMES
    from embedperf.spec import CORPUS_TYPES, SUITE_KEYS, TIMING_TYPES

    scalar = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                       st.text(max_size=8), st.sampled_from(NAMES + JUNK))
    anything = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
    runtime = [*RUNTIMES, "all", "ort", "Torch", None]
    model = [*MODELS, *(m.slug for m in MODELS.values()), "gpt2", "BGE-M3"]
    ints = [1, 8, 0, -1, 600, [1, 8], [16, 128], [], [1, "x"], "1,8", "x", [2.5]]
    numbers = [0, 1, 2, 5, 10, 0.5, -1, 1000, 2.5, None, "x", [1]]
    plausible = {
        "model": model, "runtimes": runtime + [["null"], ["null", "torch"], ["all"], "null,torch", [None]],
        "batch": ints, "seq": ints + [16, [16, 128]], "source": ["hub", "local", "package", "twin", "tiny", "ftp"],
        "device": ["cpu", "cuda", "cuda:1", "tpu"],
        "precision": ["fp32", "fp16", "bf16", "int8", "fp32,int8", ["fp32", "bf16"], "fp64", [], "INT8"],
        "scenario": ["latency", "throughput", "offline"], "threads": [1, 2, 0, -1, 64],
        "truncate_dim": [64, 128, 256, 300, 512, 768], "fault": ["crash", "hang", "exit", "oom", "boom"],
        "calibrate": [True, False],
        "memory_limit_mb": [100, 0, -5, 1.5], "images": ["empty", "missing", "a-file"],
    }
    values = {k: st.sampled_from(v) for k, v in plausible.items()}
    values["timing"] = st.dictionaries(st.sampled_from([*TIMING_TYPES, "bogus"]), st.sampled_from(numbers),
                                       max_size=4)
    values["corpus"] = st.dictionaries(st.sampled_from([*CORPUS_TYPES, "bogus"]), st.sampled_from(numbers + [4096]),
                                       max_size=4)
    entry = st.fixed_dictionaries({"name": st.sampled_from(model)}, optional={
        "source": st.sampled_from(["twin", "tiny", "package", "x"]), "truncate_dim": st.sampled_from([128, 300]),
        "sorce": st.just("tiny")})
    values["models"] = st.lists(st.one_of(st.sampled_from(model), entry), max_size=2)
    keys = sorted(SUITE_KEYS - {"runtimes", "batch"}) + ["bogus", "threds"]

    def value_for(key: str):
        near = values.get(key)
        return st.one_of(*[near] * 6, anything) if near is not None else anything

    # the two keys a suite needs (mostly), and up to four others
    chosen = st.tuples(st.sampled_from([["runtimes", "batch"]] * 8 + [["runtimes"], ["batch"]]),
                       st.lists(st.sampled_from(keys), max_size=4, unique=True))
    return chosen.flatmap(lambda ks: st.fixed_dictionaries({k: value_for(k) for k in [*ks[0], *ks[1]]}))


BREAKERS = [":", "[", "]", "{", "}", "\t", "&a ", "*a", "!!python/object:os.system ", "'", '"', "%", "@", "`",
            "- ", "\n  ", ": :", "? ", "|", ">", "#", "\\", "\x85", "\ufeff"]


def _suite_texts():
    dumped = _suite_docs().map(lambda d: yaml.safe_dump(d, allow_unicode=True))
    broken = st.tuples(dumped, st.integers(0, 10**6), st.sampled_from(BREAKERS)).map(
        lambda t: t[0][:t[1] % (len(t[0]) + 1)] + t[2] + t[0][t[1] % (len(t[0]) + 1):])
    return st.one_of(*[dumped] * 4, broken, broken, st.text(max_size=60))


OVERRIDES = st.lists(st.sampled_from([["--batch", "4"], ["--runtimes", "null"], ["--threads", "1"],
                                      ["--precision", "bf16"], ["--seq", "24"], ["--model", "bge-m3"],
                                      ["--source", "tiny"], ["--forks", "0"], ["--min-seconds", "5"],
                                      ["--scenario", "throughput"], ["--forks", "2"]]), max_size=2)


def test_generated_suite_files(sandbox, capsys):
    seen = {"accepted": 0, "rejected": 0}
    path = Path("fuzzed.yaml")

    @settings(max_examples=-(-SUITE_FILES // BATCH), **SETTINGS)
    @given(st.lists(st.tuples(_suite_texts(), OVERRIDES), min_size=BATCH, max_size=BATCH))
    def batch(suites):
        for text, overrides in suites:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
            argv = ["run", "--dry-run", "--suite", str(path), *(t for o in overrides for t in o)]
            seen[judge(invoke(*argv), [*argv, text])] += 1

    batch()
    with capsys.disabled():
        print(f"\nfuzz: {sum(seen.values())} suite files ({seen['accepted']} accepted, "
              f"{seen['rejected']} rejected in one line)")
    assert sum(seen.values()) >= SUITE_FILES and seen["accepted"] and seen["rejected"]
