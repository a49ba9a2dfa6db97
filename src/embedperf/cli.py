"""The embedperf command line. Commands only: the work lives in the layers below."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from embedperf.models.registry import DEFAULT_MODEL, MODELS, UnknownModel, sources_for
from embedperf.spec import SpecError

app = typer.Typer(
    help="Benchmark embedding-model inference across runtimes: latency, throughput, memory and parity "
         "with the PyTorch fp32 reference, in numbers that say how they were obtained.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
cache_app = typer.Typer(help="Show or free the prepare cache (exports, workloads).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _add_cloud() -> None:
    from embedperf.cloud.cli import cloud_app

    app.add_typer(cloud_app, name="cloud")


_add_cloud()


def _say(msg: str) -> None:
    print(msg, flush=True)


@app.command()
def run(
    model: Optional[str] = typer.Option(None, "--model", "-m", help=f"Model name (hub id; default {DEFAULT_MODEL}); "
                                        "see `embedperf models`. With --source hub or local any model of a family "
                                        "embedperf implements, read from its own files."),
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
    images: Optional[Path] = typer.Option(None, help="Image towers: a folder of pictures (default: the sample "
                                          "photographs inside scikit-image, then seeded synthetic ones)."),
    target_ci: float = typer.Option(0.01, help="Stop a shape once the 95% bootstrap CI of its median is within "
                                    "±this share of it (0: stop at --min-calls/--min-seconds)."),
    calibrate_machine: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                           help="Measure this machine's peak once when no profile exists."),
    suite: Optional[Path] = typer.Option(None, help="A suite YAML file; its keys replace the options above."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    precision: str = typer.Option("fp32", help="fp32 (default), fp16 or bf16: never chosen silently."),
    threads: Optional[int] = typer.Option(None, help="Intra-op threads (default: the CPUs this process may use)."),
    truncate_dim: Optional[int] = typer.Option(None, help="Matryoshka: keep this many dims, then re-normalize."),
    warmup: int = typer.Option(3, help="Untimed warm-up calls per shape (the first is reported as first call)."),
    min_calls: int = typer.Option(10, help="Timed calls per shape, at least."),
    min_seconds: float = typer.Option(2.0, help="Seconds of timed calls per shape, at least."),
    max_seconds: float = typer.Option(60.0, help="Cap on the timed loop of one shape."),
    load_timeout: float = typer.Option(600.0, help="Seconds a runner may take to load before it counts as hung."),
    grace: float = typer.Option(120.0, help="Seconds per shape beyond --max-seconds before a runner counts as hung."),
    memory_limit_mb: Optional[float] = typer.Option(None, help="Kill a runner whose RSS passes this (default: 90% "
                                                    "of the memory available at start)."),
    fault: Optional[str] = typer.Option(None, help="Null runners only: crash, hang, exit or oom, for fault tests."),
    fault_at_shape: int = typer.Option(0, help="Null runners only: the shape index where --fault strikes."),
    results: Path = typer.Option(Path("results"), help="Results root: one folder per run."),
    resume: Optional[str] = typer.Option(None, help="RUN_ID: run only the cells of that run that are missing."),
    upload: Optional[str] = typer.Option(None, help="s3://bucket/prefix/: upload each cell document as soon as "
                                         "it is written (honours AWS_ENDPOINT_URL)."),
) -> None:
    """Run a matrix of model x runtime x shape cells and print the table."""
    from embedperf import spec as specs
    from embedperf.orchestrator import load_run_spec, run_spec
    from embedperf.report.markdown import overhead_lines, table

    if resume:
        run_doc = load_run_spec(results, resume)
    elif suite:
        run_doc = specs.load_suite(suite)
    else:
        choice = specs.model_choice(model, source, path, revision, truncate_dim)
        timing = specs.Timing(warmup=warmup, min_calls=min_calls, min_seconds=min_seconds, max_seconds=max_seconds,
                              load_timeout=load_timeout, grace=grace, target_ci=target_ci or None)
        run_doc = specs.build([choice], runtimes, batch, seq, device, precision, threads, timing, memory_limit_mb,
                              fault, fault_at_shape, scenario=scenario, images=str(images) if images else None,
                              corpus=specs.Corpus(items=corpus_items), calibrate=calibrate_machine,
                              texts=str(text) if text else None)
    if not calibrate_machine:
        run_doc.calibrate = False
    if run_doc.memory_limit_mb is None:
        import psutil

        run_doc.memory_limit_mb = round(psutil.virtual_memory().available / 2**20 * 0.9)
    on_cell = None
    if upload:
        if not upload.startswith("s3://"):
            raise SpecError(f"--upload takes an s3:// URI, got {upload!r}")
        from embedperf.cloud.s3 import upload_file

        def on_cell(path: Path) -> None:
            upload_file(path, upload)
    run_id, cells = run_spec(run_doc, results, resume, say=_say, on_cell=on_cell)
    from embedperf.results.store import load_cells

    all_cells = load_cells([results / run_id])
    _say("")
    _say(table(all_cells))
    overhead = overhead_lines(all_cells)
    if overhead:
        _say(overhead)
    _say(f"results: {results / run_id}")
    failed = [c for c in cells if c["status"] == "failed"]
    if failed:
        _say(f"{len(failed)} cell(s) failed")


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

    entry = load_or_calibrate(threads, force=force, quick=quick)  # measures in a subprocess of its own
    print(describe(entry))
    print(f"profile: {profile_path()}")


@app.command()
def compare(
    a: Path = typer.Argument(..., help="Baseline (A): a run folder or results root."),
    b: Path = typer.Argument(..., help="Candidate (B): a run folder or results root."),
    threshold: float = typer.Option(0.05, help="A change is significant only when its 95% CI lies wholly "
                                    "outside [1 - threshold, 1 + threshold]."),
    fail_above: Optional[float] = typer.Option(None, "--fail-above", metavar="PCT",
                                               help="Exit 1 when a significant slowdown exceeds PCT percent."),
    format: str = typer.Option("markdown", "--format", "-f", help="markdown or json."),
) -> None:
    """Median ratio B/A per matching cell, with a bootstrap 95% CI; flags significant slowdowns."""
    from embedperf.results.compare import compare as compare_cells
    from embedperf.results.compare import fail_above as slowdown_above
    from embedperf.results.compare import render_markdown
    from embedperf.results.store import load_cells

    if format not in ("markdown", "json"):
        raise SpecError(f"unknown format {format!r}; choose from: markdown, json")
    if not 0 <= threshold < 1:
        raise SpecError(f"--threshold must be in [0, 1), got {threshold}")
    missing = [str(d) for d in (a, b) if not d.exists()]
    if missing:
        raise SpecError(f"no such results folder: {', '.join(missing)}")
    rows = compare_cells(load_cells([a]), load_cells([b]), threshold)
    print(json.dumps(rows, indent=1) if format == "json" else render_markdown(rows, threshold))
    if fail_above is not None and slowdown_above(rows, fail_above):
        print(f"error: a significant slowdown exceeds {fail_above:g}%", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
def report(
    dirs: list[Path] = typer.Argument(..., help="Run folders or results roots."),
    format: str = typer.Option("markdown", "--format", "-f", help="markdown or json."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write one self-contained HTML report (figures "
                                        "inlined, nothing loaded) to this file."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown-out", help="Also write the full Markdown report "
                                                "(matrix, parity, work, warnings) to this file."),
) -> None:
    """Print the table of stored results (Markdown) or the cells as a JSON list."""
    from embedperf.report.markdown import overhead_lines, table
    from embedperf.results.store import flatten, load_cells

    if format not in ("markdown", "json"):
        raise SpecError(f"unknown format {format!r}; choose from: markdown, json")
    dirs = _local_dirs(dirs)
    missing = [str(d) for d in dirs if not d.exists()]
    if missing:
        raise SpecError(f"no such results folder: {', '.join(missing)}")
    cells = load_cells(dirs)
    if html or markdown_out:
        from embedperf.report.html import profile_for, write_html, write_markdown

        profile = profile_for(cells)  # this machine's calibration, only when the cells were measured here
        if html:
            write_html(cells, html, profile)
            print(f"html report: {html}" + ("" if profile else " (no roofline: run `embedperf calibrate`)"),
                  file=sys.stderr)
        if markdown_out:
            write_markdown(cells, markdown_out, profile)
            print(f"markdown report: {markdown_out}", file=sys.stderr)
    if format == "json":
        print(json.dumps([flatten(c) for c in cells], indent=1))
        return
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


@cache_app.command("ls")
def cache_ls() -> None:
    """Show what the prepare cache holds and its size."""
    from embedperf.paths import cache_root
    from embedperf.prepare.cache import dir_size, list_entries

    root = cache_root()
    entries = list_entries(root)
    print(f"cache: {root}")
    for e in entries:
        stale = "  (stale: other exporter versions)" if e["stale"] else ""
        print(f"  {e['key']}  {e['model']} ({e['source']})  {', '.join(e['artifacts'])}  {e['size_mb']:.0f} MB{stale}")
    for sub in ("workloads", "cargo-target", "cpp-build", "deps"):
        p = root / sub
        if p.exists():
            print(f"  {sub}/  {dir_size(p) / 2**20:.0f} MB")


@cache_app.command("prune")
def cache_prune(
    keys: Optional[list[str]] = typer.Argument(None, help="Prepared-model keys to remove (see `cache ls`)."),
    all_: bool = typer.Option(False, "--all", help="Remove every prepared model and workload."),
) -> None:
    """Free the cache: stale exports (other versions) by default, or the given keys, or --all."""
    from embedperf.paths import cache_root
    from embedperf.prepare.cache import prune

    removed = prune(cache_root(), everything=all_, keys=keys or [])
    for key, size in removed:
        print(f"removed {key} ({size / 2**20:.0f} MB)")
    print(f"freed {sum(s for _, s in removed) / 2**20:.0f} MB" if removed else "nothing to remove")


def main() -> None:
    """Console entry point: user mistakes are one line and exit code 2, never a traceback."""
    from embedperf.models.sources import SourceError
    from embedperf.prepare import PrepareError
    from embedperf.workload.text import ShapeError

    warnings.simplefilter("default")
    try:
        # without standalone mode click returns a command's exit code instead of exiting
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except (SpecError, UnknownModel, ShapeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (SourceError, PrepareError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # click's usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
