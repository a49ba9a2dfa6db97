"""The embedperf command line. Commands only: the work lives in the layers below."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from embedperf.models.registry import DEFAULT_MODEL, MODELS, UnknownModel, sources_for
from embedperf.spec import SpecError

# What each exit status means; printed by --help and tested (tests/cli/test_exit_codes.py).
EXIT_OK = 0
EXIT_BUG = 1  # an unexpected internal error (with its traceback: a bug to report), or Terraform/an export failed
EXIT_USAGE = 2  # a usage or input mistake: one line saying what to fix
EXIT_FAILED_CELLS = 3  # `run` finished, but some cells failed (skipped cells are not failures)
EXIT_SLOWDOWN = 4  # `compare --fail-above` found a significant slowdown over the limit
EXIT_NOTHING = 5  # nothing to report or compare: no cells found, or no cell in common
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: finished cells are kept, `run --resume` goes on

EXIT_CODES_HELP = (
    "Exit status: 0 ok; 1 internal error (a traceback: please report it) or Terraform / an export failed; "
    "2 usage or input error (one line); 3 `run` finished but some cells failed (skipped cells are not failures); "
    "4 `compare --fail-above` found a slowdown over the limit; 5 nothing to report or compare (no cells, or no "
    "cell in common); 130 interrupted (finished cells are kept; `run --resume RUN_ID` goes on)."
)

app = typer.Typer(
    help="Benchmark embedding-model inference across runtimes: latency, throughput, memory and parity "
         "with the PyTorch fp32 reference, in numbers that say how they were obtained.",
    epilog=EXIT_CODES_HELP, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
cache_app = typer.Typer(help="Show or free the prepare cache (exports, workloads).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _add_cloud() -> None:
    from embedperf.cloud.cli import cloud_app

    app.add_typer(cloud_app, name="cloud")


_add_cloud()


def _say(msg: str) -> None:
    print(msg, flush=True)


def _fail(message: str, code: int) -> None:
    """One `error:` line on stderr, then exit with `code`."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave this option (on the command line), rather than it taking its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _check_results(results: Path, create: bool) -> None:
    """One line when the results root is a file, or cannot be created or written."""
    if results.exists() and not results.is_dir():
        raise SpecError(f"--results {results}: not a folder")
    if create:
        try:
            results.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SpecError(f"--results {results}: cannot create it ({e.strerror or e})") from None
        probe = results
    else:  # a dry run creates nothing: check the nearest folder that exists
        probe = next((p for p in [results, *results.absolute().parents] if p.exists()), Path("/"))
        if not probe.is_dir():
            raise SpecError(f"--results {results}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SpecError(f"--results {results}: {probe} is not writable")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, taken down the same path as Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated()


def _planned_shapes(run_doc, choice) -> list:
    """The shapes of one model's cells, as the orchestrator plans them."""
    from embedperf.models.registry import get_model
    from embedperf.orchestrator.plan import ModelPlan, shapes_for

    return shapes_for(run_doc, ModelPlan(choice, get_model(choice.name)))


def _print_plan(run_doc, results: Path, run_id: str, kept: int = 0) -> None:
    """The dry run's printout: the matrix and how each shape is timed; nothing is prepared or measured."""
    from embedperf.measure.machine import available_cpus
    from embedperf.models.registry import get_model
    from embedperf.orchestrator.plan import forks_of

    t = run_doc.timing
    precisions = list(run_doc.precision)
    shapes = {i: _planned_shapes(run_doc, m) for i, m in enumerate(run_doc.models)}
    cells = sum(len(s) for s in shapes.values()) * len(run_doc.runtimes) * len(precisions)
    _say(f"dry run: nothing is prepared or measured (run {run_id}, results in {results / run_id})")
    modes = f" x {len(run_doc.outputs)} output mode(s)" if run_doc.outputs != ["dense"] else ""
    _say(f"cells: {cells} = {len(run_doc.models)} model(s) x {len(run_doc.runtimes)} runtime(s) x "
         f"{len(precisions)} precision(s){modes} x shapes")
    for i, m in enumerate(run_doc.models):
        extra = f", truncate to {m.truncate_dim}" if m.truncate_dim else ""
        tower = get_model(m.name).multimodal
        _say(f"  model {m.name} ({m.source}{extra}): {len(shapes[i])} shape(s): "
             f"{', '.join(x.label(tower) for x in shapes[i])}")
    _say(f"  runtimes: {', '.join(run_doc.runtimes)}")
    _say(f"  precision: {', '.join(precisions)}; outputs: {', '.join(run_doc.outputs)}; device: {run_doc.device}; "
         f"scenario: {run_doc.scenario}"
         + (f" ({run_doc.corpus.items} items)" if run_doc.scenario == "throughput" else ""))
    threads = run_doc.threads or f"{available_cpus()} (the CPUs this process may use)"
    forks = forks_of(run_doc)
    towers = sum(len({(x.modality, x.outputs) for x in shapes[i]}) for i in range(len(run_doc.models)))
    _say(f"  threads: {threads}")
    _say(f"  forks: {forks} per cell ({'given' if t.forks else 'default for ' + run_doc.scenario}): "
         f"{towers * len(run_doc.runtimes) * len(precisions) * forks} runner process(es), in rounds of a seeded "
         f"shuffle (seed {t.schedule_seed})")
    stop = f"once the CI of the median is within ±{t.target_ci * 100:g}%" if t.target_ci else "at the minimums"
    _say(f"  timing: {t.warmup} warm-up call(s); at least {t.min_calls} call(s) and {t.min_seconds:g} s, "
         f"stop {stop}, at most {t.max_seconds:g} s per shape (the cap wins over the minimums)")
    if run_doc.fault:
        _say(f"  fault: {run_doc.fault['kind']} at shape {run_doc.fault['at_shape']}")
    if kept:
        _say(f"  resume: {kept} cell(s) already on disk are kept")


@app.command(epilog=EXIT_CODES_HELP)
def run(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", "-m", help=f"Model name (hub id or the part after the "
                                        f"slash, any case; default {DEFAULT_MODEL}); see `embedperf models`. With "
                                        "--source hub or local any model of a family embedperf implements, read from "
                                        "its own files."),
    source: Optional[str] = typer.Option(None, help="Where weights come from: hub, local, package, twin, tiny "
                                         "(default: package where one exists, else twin)."),
    path: Optional[str] = typer.Option(None, help="Snapshot folder, with --source local (named from the folder "
                                       "unless --model names it)."),
    text: Optional[Path] = typer.Option(None, "--text", help="Real texts, one per line, tokenized by the model's "
                                        "own tokenizer (timed apart from the model); each batch padded to its "
                                        "longest text, or to each --seq."),
    revision: Optional[str] = typer.Option(None, help="Hub revision, with --source hub."),
    runtimes: str = typer.Option("torch,onnxruntime-python,openvino", "--runtimes", "-r",
                                 help="Comma-separated runtimes, or `all`; see `embedperf runtimes`."),
    batch: str = typer.Option("1,8", "--batch", "-b", help="Comma-separated batch sizes."),
    seq: Optional[str] = typer.Option(None, "--seq", "-s", help="Comma-separated sequence lengths in tokens "
                                      "(default 16,128; CLIP/SigLIP towers have fixed lengths: not allowed there)."),
    scenario: str = typer.Option("latency", help="latency: one batch called repeatedly; throughput: a seeded corpus "
                                 "of varied lengths, batched sorted and unsorted (items/s, tokens/s)."),
    corpus_items: int = typer.Option(1024, help="Throughput: corpus size (log-normal lengths, median 64, σ 0.8)."),
    accuracy_corpus: Optional[Path] = typer.Option(None, "--corpus", help="Real text for each (runtime, precision)'s "
                                                   "accuracy pass, one sentence per line (default: sentences of the "
                                                   "standard library's docstrings)."),
    images: Optional[Path] = typer.Option(None, help="Image towers: a folder of pictures (default: the sample "
                                          "photographs inside scikit-image, then seeded synthetic ones)."),
    target_ci: float = typer.Option(0.01, help="Stop a shape once the 95% bootstrap CI of its median is within "
                                    "±this share of it (0: stop at --min-calls/--min-seconds)."),
    calibrate_machine: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                           help="Measure this machine's peak once when no profile exists."),
    suite: Optional[Path] = typer.Option(None, help="A suite YAML file (the same keys as these options); options "
                                         "given on the command line override its keys."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    precision: str = typer.Option("fp32", help="Comma-separated precisions, each its own cells: fp32 (default), "
                                  "bf16, fp16, int8. A runtime that cannot run one natively gets `skipped` cells "
                                  "with the reason, never fp32 under that label."),
    outputs: str = typer.Option("dense", help="Comma-separated output modes, each its own cells: dense (default), "
                                "and for BAAI/bge-m3 sparse (+ lexical weights), colbert (+ multi-vectors) or all; a "
                                "mode returns the dense embedding too, so its cost over dense reads off the table "
                                "(docs/outputs.md). Another model refuses sparse/colbert in one line."),
    threads: Optional[int] = typer.Option(None, help="Intra-op threads (default: the CPUs this process may use)."),
    truncate_dim: Optional[int] = typer.Option(None, help="Matryoshka: keep this many dims, then re-normalize."),
    forks: Optional[int] = typer.Option(None, help="Separate runner processes per cell, run interleaved with the "
                                        "other cells' (default 3 for latency, 2 for throughput): one process is "
                                        "one draw of the machine's fast or slow mode."),
    warmup: int = typer.Option(3, help="Untimed warm-up calls per shape (the first is reported as first call)."),
    min_calls: int = typer.Option(10, help="Timed calls per shape, at least, unless --max-seconds ends the shape "
                                  "first: the time cap wins."),
    min_seconds: float = typer.Option(2.0, help="Seconds of timed calls per shape, at least (at most "
                                      "--max-seconds)."),
    max_seconds: float = typer.Option(60.0, help="Cap on the timed loop of one shape; it wins over --min-calls."),
    load_timeout: float = typer.Option(600.0, help="Seconds a runner may take to load before it counts as hung."),
    grace: float = typer.Option(120.0, help="Seconds per shape beyond --max-seconds before a runner counts as hung."),
    memory_limit_mb: Optional[float] = typer.Option(None, help="Kill a runner whose RSS passes this (default: 90% "
                                                    "of the memory available at start)."),
    fault: Optional[str] = typer.Option(None, help="Null runners only: crash, hang, exit or oom, for fault tests."),
    fault_at_shape: int = typer.Option(0, help="Null runners only: the shape index where --fault strikes."),
    results: Path = typer.Option(Path("results"), help="Results root: one folder per run."),
    resume: Optional[str] = typer.Option(None, help="RUN_ID: run only the cells of that run that are missing "
                                         "(with its own spec)."),
    upload: Optional[str] = typer.Option(None, help="s3://bucket/prefix/: upload each cell document as soon as "
                                         "it is written (honours AWS_ENDPOINT_URL)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate everything and print the planned matrix; "
                                 "prepare and run nothing."),
) -> None:
    """Run a matrix of model x runtime x shape cells and print the table.

    Ctrl-C (or SIGTERM) stops the runner, keeps every finished cell and prints the `--resume` command.
    """
    from embedperf import spec as specs
    from embedperf.orchestrator import load_run_spec, new_run_id

    values = {name: str(v) if isinstance(v, Path) else v for name, v in ctx.params.items()}
    given = [name for name in specs.OPTION_KEYS if _given(ctx, name)]
    if upload and not upload.startswith("s3://"):
        raise SpecError(f"--upload takes an s3:// URI, got {upload!r}")
    kept = 0
    if resume:
        spec_options = [n for n in given if n != "calibrate_machine"] + (["suite"] if suite else [])
        if spec_options:
            flags = ", ".join("--" + n.replace("_", "-") for n in spec_options)
            raise SpecError(f"--resume runs {resume}'s own spec: drop {flags}")
        parts = load_run_spec(results, resume)
        if "calibrate_machine" in given:
            for part in parts:
                part.calibrate = calibrate_machine
        from embedperf.results.store import existing_cells

        kept = len(existing_cells(results / resume))
    elif suite:
        # only what the user typed overrides the suite (each of its parts); defaults never do
        parts = specs.load_suite(suite, {specs.OPTION_KEYS[n]: values[n] for n in given})
    else:
        parts = [specs.from_doc(specs.apply_overrides({}, {key: values[n] for n, key in specs.OPTION_KEYS.items()}),
                                "command line")]
    _check_results(results, create=not dry_run)  # after the spec: a refused spec leaves no folder behind
    run_id = resume or new_run_id()
    if dry_run:
        for i, part in enumerate(parts):
            if len(parts) > 1:
                _say(f"part {i + 1} of {len(parts)}" + (f": {part.description}" if part.description else ""))
            _print_plan(part, results, run_id, kept)
        return
    for part in parts:
        if part.memory_limit_mb is None:
            import psutil

            part.memory_limit_mb = round(psutil.virtual_memory().available / 2**20 * 0.9)
    _measure(parts, results, run_id, _uploader(upload) if upload else None)


def _uploader(uri: str):
    """What `run --upload` calls with each cell document's path as soon as it is written."""
    from embedperf.cloud.s3 import upload_file

    return lambda path: upload_file(path, uri)


def _measure(parts, results: Path, run_id: str, on_cell) -> None:
    """Run the matrix, print the table; Ctrl-C/SIGTERM stop it cleanly with the command that resumes it."""
    from embedperf.orchestrator import run_spec
    from embedperf.report.markdown import overhead_lines, table
    from embedperf.results.store import load_cells

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run_spec(parts, results, run_id, say=_say, on_cell=on_cell)
    except KeyboardInterrupt as e:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the message short
        _interrupted(results, run_id, "terminated" if isinstance(e, _Terminated) else "interrupted")
    finally:
        signal.signal(signal.SIGTERM, previous)
    all_cells = load_cells([results / run_id])
    _say("")
    _say(table(all_cells))
    overhead = overhead_lines(all_cells)
    if overhead:
        _say(overhead)
    _say(f"results: {results / run_id}")
    failed = [c for c in all_cells if c["status"] == "failed"]
    if failed:
        _fail(f"{len(failed)} of {len(all_cells)} cell(s) failed (each cell's reason is in the table and its "
              "document)", EXIT_FAILED_CELLS)


def _interrupted(results: Path, run_id: str, how: str) -> None:
    """Say what was kept and how to go on; exit 130."""
    from embedperf.results.store import existing_cells

    run_dir = results / run_id
    if not (run_dir / "run.json").exists():
        print(f"\n{how}: run {run_id} had not started; nothing to resume", file=sys.stderr, flush=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    kept = len(existing_cells(run_dir))
    print(f"\n{how}: run {run_id} stopped; its runner was killed and {kept} finished cell(s) are kept in {run_dir}\n"
          f"resume with: embedperf run --resume {run_id} --results {shlex.quote(str(results))}",
          file=sys.stderr, flush=True)
    raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def models() -> None:
    """List the models embedperf knows, with their pooling, heads and sources."""
    for spec in MODELS.values():
        dense = " → ".join(f"{d.in_features}→{d.out_features}" for d in spec.dense) or "none"
        mat = ", ".join(map(str, spec.matryoshka)) or "–"
        if spec.multimodal:
            facts = (f"towers text ({spec.max_length} tokens, fixed) and image ({spec.image_size}px, "
                     f"{spec.image_preprocess} preprocessing), each pooled and projected by its own head, "
                     f"output {spec.output_dim}")
        else:
            facts = (f"pooling {spec.pooling}, dense {dense}, output {spec.output_dim} (Matryoshka: {mat}), "
                     f"max length {spec.max_length}")
        print(f"{spec.name}\n  family {spec.family}, {facts}\n  sources: {', '.join(sources_for(spec))}")


@app.command()
def runtimes() -> None:
    """List the runtimes and whether each can run on this machine (and how to fix it)."""
    from embedperf.runners.registry import RUNTIMES, availability

    for r in RUNTIMES.values():
        reason = availability(r)
        status = "ready" if reason is None else f"unavailable: {reason}"
        print(f"{r.name:20s} {r.language:7s} {r.artifact:10s} {r.description}\n{'':20s} {status}")


@app.command()
def calibrate(
    threads: Optional[int] = typer.Option(None, help="Thread budget (default: the CPUs this process may use)."),
    force: bool = typer.Option(False, help="Measure again even when this machine already has a profile."),
    quick: bool = typer.Option(False, help="Small sizes, a few seconds: for tests, not a ceiling to report."),
) -> None:
    """Measure this machine's peak matmul GFLOP/s and memory bandwidth (the roofline's ceilings), once per thread budget."""
    from embedperf.measure.calibrate import describe, load_or_calibrate, profile_path

    if threads is not None and threads < 1:
        raise SpecError("--threads must be at least 1")
    entry = load_or_calibrate(threads, force=force, quick=quick)  # measures in a subprocess of its own
    print(describe(entry))
    print(f"profile: {profile_path()}")


def _cells_of(dirs: list[Path]) -> list[dict]:
    """The cells under existing result folders; exit 2 when a folder is missing."""
    from embedperf.results.store import load_cells

    missing = [str(d) for d in dirs if not d.exists()]
    if missing:
        raise SpecError(f"no such results folder: {', '.join(missing)}")
    return load_cells(dirs)


@app.command(epilog=EXIT_CODES_HELP)
def compare(
    a: Path = typer.Argument(..., help="Baseline (A): a run folder or results root."),
    b: Path = typer.Argument(..., help="Candidate (B): a run folder or results root."),
    threshold: float = typer.Option(0.05, help="A change is significant only when its 95% CI lies wholly "
                                    "outside [1 - threshold, 1 + threshold]."),
    fail_above: Optional[float] = typer.Option(None, "--fail-above", metavar="PCT",
                                               help="Exit 4 when a significant slowdown exceeds PCT percent."),
    format: str = typer.Option("markdown", "--format", "-f", help="markdown or json."),
) -> None:
    """Median ratio B/A per matching cell, with a bootstrap 95% CI; flags significant slowdowns.

    Exit 4 when --fail-above finds a slowdown over the limit, 5 when a side has no cells or the
    two have no cell in common.
    """
    from embedperf.results.compare import compare as compare_cells
    from embedperf.results.compare import fail_above as slowdown_above
    from embedperf.results.compare import render_markdown

    if format not in ("markdown", "json"):
        raise SpecError(f"unknown format {format!r}; choose from: markdown, json")
    if not 0 <= threshold < 1:
        raise SpecError(f"--threshold must be in [0, 1), got {threshold}")
    if fail_above is not None and not 0 <= fail_above < float("inf"):
        raise SpecError(f"--fail-above takes a percentage >= 0, got {fail_above}")
    cells_a, cells_b = _cells_of([a]), _cells_of([b])
    for side, path, cells in (("A", a, cells_a), ("B", b, cells_b)):
        if not cells:
            _fail(f"no cells in {side} ({path}): nothing to compare", EXIT_NOTHING)
    rows = compare_cells(cells_a, cells_b, threshold)
    print(json.dumps(rows, indent=1) if format == "json" else render_markdown(rows, threshold))
    if not any(r["verdict"] not in ("only in A", "only in B") for r in rows):
        _fail(f"no cell in common between A ({a}) and B ({b})", EXIT_NOTHING)
    if fail_above is not None and slowdown_above(rows, fail_above):
        _fail(f"a significant slowdown exceeds {fail_above:g}%", EXIT_SLOWDOWN)


@app.command(epilog=EXIT_CODES_HELP)
def report(
    dirs: list[Path] = typer.Argument(..., help="Run folders or results roots (several: compared side by side, "
                                      "setups kept apart)."),
    format: str = typer.Option("markdown", "--format", "-f", help="markdown (verdicts, then the tables), json "
                               "(the flat cell list) or verdicts-json (verdicts, model table, expectations)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write one self-contained HTML report (figures "
                                        "inlined, nothing loaded) to this file."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown-out", help="Also write the full Markdown report "
                                                "(verdicts, models, matrix, parity, work, warnings) to this file, "
                                                "its figures as SVG files in <name>-figures/ beside it."),
) -> None:
    """Print the verdicts and tables of stored results (Markdown), or the cells or verdicts as JSON.

    Exit 5 when the folders hold no cells.
    """
    from embedperf.report.markdown import overhead_lines, table
    from embedperf.results.store import flatten

    formats = ("markdown", "json", "verdicts-json")
    if format not in formats:
        raise SpecError(f"unknown format {format!r}; choose from: {', '.join(formats)}")
    for out in (html, markdown_out):
        if out is not None and out.exists() and out.is_dir():
            raise SpecError(f"{out} is a folder: give a file name")
    dirs = _local_dirs(dirs)
    cells = _cells_of(dirs)
    if not cells:
        _fail(f"no cells in {', '.join(map(str, dirs))}: nothing to report", EXIT_NOTHING)
    if html or markdown_out:
        from embedperf.report.html import profile_for, write_html, write_markdown

        profile = profile_for(cells)  # this machine's calibration, only when the cells were measured here
        for out, write, what in ((html, write_html, "html"), (markdown_out, write_markdown, "markdown")):
            if out is None:
                continue
            try:
                write(cells, out, profile)
            except OSError as e:
                raise SpecError(f"cannot write the {what} report to {out}: {e.strerror or e}") from None
            note = " (no roofline: run `embedperf calibrate`)" if what == "html" and not profile else ""
            print(f"{what} report: {out}{note}", file=sys.stderr)
    if format == "json":
        print(json.dumps([flatten(c) for c in cells], indent=1))
        return
    if format == "verdicts-json":
        from embedperf.report.verdicts import to_json

        print(json.dumps(to_json(cells), indent=1))
        return
    from embedperf.report.front import verdict_lines
    from embedperf.report.verdicts import verdicts

    judged = verdicts(cells)
    if judged:
        print("\n".join(verdict_lines(judged)))
    print(table(cells))
    overhead = overhead_lines(cells)
    if overhead:
        print(overhead)


def _local_dirs(dirs: list) -> list[Path]:
    """Result folders, with s3:// runs downloaded to a temporary folder first."""
    out = []
    for d in dirs:
        text = str(d)
        if text.startswith("s3:/"):
            import tempfile

            from embedperf.cloud.s3 import download_run

            uri = "s3://" + text[len("s3:/"):].lstrip("/")  # Path() folds the double slash
            out.append(download_run(uri, Path(tempfile.mkdtemp(prefix="embedperf-s3-"))))
        else:
            out.append(Path(d))
    return out


def _entry_line(e: dict) -> str:
    if e["building"]:
        procs = ", ".join(str(r.get("pid")) for r in e["building"].get("processes", []))
        host = e["building"].get("host")
        return f"  {e['key']}  being built (pid {procs or '?'} on {host})  {e['size_mb']:.0f} MB so far"
    if e["incomplete"]:
        return f"  {e['key']}  incomplete (an interrupted build)  {e['size_mb']:.0f} MB  (stale)"
    stale = "  (stale: other exporter versions)" if e["stale"] else ""
    what = ", ".join(e["artifacts"])
    return f"  {e['key']}  {e['model']} ({e['source']})  {what}  {e['size_mb']:.0f} MB{stale}"


@cache_app.command("ls")
def cache_ls() -> None:
    """Show what the prepare cache holds and its size (entries being built are never stale)."""
    from embedperf.paths import cache_root
    from embedperf.prepare.cache import dir_size, list_entries

    root = cache_root()
    entries = list_entries(root)
    print(f"cache: {root}")
    for e in entries:
        print(_entry_line(e))
    for sub in ("workloads", "cargo-target", "cpp-build", "deps"):
        p = root / sub
        if p.exists():
            print(f"  {sub}/  {dir_size(p) / 2**20:.0f} MB")


@cache_app.command("prune")
def cache_prune(
    keys: Optional[list[str]] = typer.Argument(None, help="Prepared-model keys to remove (see `cache ls`)."),
    all_: bool = typer.Option(False, "--all", help="Remove every prepared model and workload."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed when standard input is not a "
                             "terminal)."),
) -> None:
    """Free the cache: stale exports (other versions, interrupted builds) by default, or the given keys, or --all.

    Lists what it will delete and asks first; never deletes an entry a build is writing into.
    """
    from embedperf.paths import cache_root
    from embedperf.prepare.cache import list_entries, prune_candidates, remove_entries

    root = cache_root()
    keys = keys or []
    known = {e["key"] for e in list_entries(root)}
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise SpecError(f"no cache entry {', '.join(unknown)} under {root}; see `embedperf cache ls`")
    remove, busy = prune_candidates(root, everything=all_, keys=keys)
    for e in busy:
        print(f"keeping {e['key']}: being built now")
    if not remove:
        print("nothing to remove")
        return
    print("will remove:")
    for e in remove:
        print(_entry_line(e) if e["key"] != "workloads" else f"  workloads/  {e['size_mb']:.0f} MB")
    if not yes:
        if not sys.stdin.isatty():
            raise SpecError(f"cache prune would remove {len(remove)} entr{'y' if len(remove) == 1 else 'ies'}: "
                            "pass --yes to confirm (standard input is not a terminal)")
        if not typer.confirm(f"Remove {len(remove)} entr{'y' if len(remove) == 1 else 'ies'}?"):
            print("nothing removed")
            return
    removed = remove_entries(remove)
    for key, size in removed:
        print(f"removed {key} ({size / 2**20:.0f} MB)")
    print(f"freed {sum(s for _, s in removed) / 2**20:.0f} MB" if removed else "nothing removed")


def _click_errors() -> tuple[type, ...]:
    """Click's exception base as Typer raises it: its own vendored copy in Typer >= 0.2x, click's before."""
    bases = [next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")]
    try:
        import click

        bases.append(click.ClickException)
    except ImportError:
        pass
    return tuple(dict.fromkeys(bases))


_COMMAND = None


def _command():
    """The click command behind the app, built once (the fuzz test calls main() thousands of times)."""
    global _COMMAND
    if _COMMAND is None:
        _COMMAND = typer.main.get_command(app)
    return _COMMAND


def main(argv: list[str] | None = None) -> None:
    """Console entry point: exits with the status `embedperf --help` documents.

    Usage and input mistakes end in click's `Usage:`/`Error:` lines or one `error:` line, exit 2, never a
    traceback; only an unexpected internal error (a bug) keeps its traceback, exit 1.
    """
    from embedperf.cloud.cli import CloudFailure
    from embedperf.models.sources import SourceError
    from embedperf.prepare import PrepareError
    from embedperf.workload.text import ShapeError

    warnings.simplefilter("default")
    try:
        # without standalone mode click returns a command's exit code instead of exiting
        rc = _command().main(args=argv, prog_name="embedperf", standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except (SpecError, UnknownModel, ShapeError, SourceError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_BUG)
    except CloudFailure as e:
        e.show()
        sys.exit(EXIT_BUG)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except _click_errors() as e:  # usage errors: click's `Usage:` and `Error:` lines, exit 2
        if type(e).__name__ == "NoArgsIsHelpError":  # `embedperf` or `embedperf cache` alone: help, then why
            print(e.format_message())
            print("Error: Missing command.", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        _show_click_error(e)
        sys.exit(e.exit_code)


def _show_click_error(e: Exception) -> None:
    """Click's own rendering (usage, hint, `Error: ...`), with the error itself kept on one line."""
    import io

    buf = io.StringIO()
    e.show(file=buf)
    lines = buf.getvalue().splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("Error:")), None)
    if at is not None:  # a value with a newline in it must not split the error line
        lines = lines[:at] + [" ".join(" ".join(lines[at:]).split())]
    print("\n".join(lines), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
