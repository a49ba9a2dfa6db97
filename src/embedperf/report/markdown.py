"""The Markdown matrix table (and its throughput and multimodal sections), built only from stored result documents."""

from __future__ import annotations

from collections import defaultdict

from embedperf.report.groups import (CORPUS_ORDER, MODALITY_ORDER, OUTPUTS_ORDER, Machine, precision_rank, towers_of,
                                     runtime_rank, versions_line)
from embedperf.results.store import flatten, fork_series

LANGUAGES = ("python", "rust", "cpp")


def _fmt(value, spec: str = ".2f", missing: str = "–") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return missing
    return format(value, spec)


def _runtime_rank(name: str) -> int:
    return runtime_rank(name)


def sort_key(row: dict):
    return (row["model"], row["source"], MODALITY_ORDER.get(row.get("modality") or "text", 9), row["batch"],
            row["seq"], CORPUS_ORDER.get(row.get("order"), 9), OUTPUTS_ORDER.get(row.get("outputs") or "dense", 9),
            _runtime_rank(row["runtime"]))


def row_of(cell: dict) -> dict:
    """flatten() of a cell document plus the few fields the sections read beyond it; a flat row is copied as is."""
    if "schema" not in cell:
        return dict(cell)
    row = flatten(cell)
    summary, zero_shot = cell.get("summary") or {}, cell.get("zero_shot") or {}
    row.update({
        "padded_tokens_per_s": summary.get("padded_tokens_per_s"),
        "passes": summary.get("passes"),
        "pass_median_s": summary.get("pass_median_s"),
        "preprocess_ms_batch": summary.get("preprocess_ms_batch"),
        "zero_shot_rule": zero_shot.get("rule"),
        "zero_shot_captions": zero_shot.get("captions"),
        "zero_shot_images": zero_shot.get("images"),
        "zero_shot_limit": zero_shot.get("limit"),
        "zero_shot_max_abs_logit_diff": zero_shot.get("max_abs_logit_diff"),
        "zero_shot_top1_agreement": zero_shot.get("top1_agreement"),
        "workload": cell["spec"].get("workload") or {},
        "harness_overhead_ns": cell.get("harness_overhead_ns"),
        "machine": _machine_label(cell),
        "flops_breakdown": (cell.get("work") or {}).get("flops_breakdown"),
        "series": fork_series(cell) if cell.get("status") == "ok" else [],
        "outputs_block": cell.get("outputs") or {},
    })
    return row


def _machine_label(cell: dict) -> str:
    return Machine.of(cell).label


def multimodal_models(rows: list[dict]) -> set[str]:
    """The models among the rows with more than one tower (an image cell present, or so in the registry)."""
    return towers_of({r["model"] for r in rows}, {r["model"] for r in rows if r.get("modality") == "image"})


def with_shapes(rows: list[dict]) -> list[dict]:
    """Give every row its `shape` label: 8×128, 8 img 224px (image tower), 8×77 text (text tower), b32 sorted."""
    multimodal = multimodal_models(rows)
    for r in rows:
        if r.get("order"):
            r["shape"] = f"b{r['batch']} {r['order']}"
        elif r.get("modality") == "image":
            r["shape"] = f"{r['batch']} img {r['seq']}px"
        elif r["model"] in multimodal:
            r["shape"] = f"{r['batch']}×{r['seq']} text"
        else:
            r["shape"] = f"{r['batch']}×{r['seq']}"
        if (r.get("outputs") or "dense") != "dense":
            r["shape"] += f" {r['outputs']}"
    return rows


def rows_of(cells: list[dict]) -> list[dict]:
    """The sorted, labelled rows of cell documents (or flat rows)."""
    return sorted(with_shapes([row_of(c) for c in cells]), key=sort_key)


def fmt_flops(flops, per_pass: bool = False) -> str:
    """1.23 GFLOP (per call), or 812.40 GFLOP/pass for a throughput cell (one pass over the corpus)."""
    if flops is None:
        return "–"
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if flops >= scale:
            break
    return f"{flops / scale:.2f} {unit}" + ("/pass" if per_pass else "")


def fmt_mb(n_bytes) -> str:
    return _fmt(n_bytes / 2**20 if n_bytes is not None else None, ".1f")


def _pct_range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.1%}" if abs(hi - lo) < 5e-4 else f"{lo:.1%}–{hi:.1%}"


def _scenario(group: list[dict], multimodal: set[str]) -> str:
    """How the numbers of one setup were obtained: the scenario and its inputs."""
    if any(r.get("scenario") == "throughput" or r.get("order") for r in group):
        wl = next((r["workload"] for r in group if r.get("order") and r.get("workload")), {})
        text = "throughput scenario: a corpus" + (f" of {wl['items']} items" if wl.get("items") else "")
        if wl.get("lengths"):
            text += f", lengths {wl['lengths']}"
        if wl.get("seed") is not None:
            text += f", seed {wl['seed']}"
        if wl.get("real_tokens"):
            text += f", {wl['real_tokens']:,} real tokens"
        text += "; padding " + (wl.get("padding") or "right, to each batch's longest")
        waste = defaultdict(list)
        for r in group:
            w = r.get("padding_waste")
            if w is None and r.get("workload"):
                w = r["workload"].get("padding_waste")
            if r.get("order") and w is not None:
                waste[r["order"]].append(w)
        if waste:
            text += "; padding waste " + ", ".join(f"{order} {_pct_range(waste[order])}"
                                                   for order in sorted(waste, key=lambda o: CORPUS_ORDER.get(o, 9)))
        return text
    if group[0]["model"] in multimodal:
        seqs = sorted({r["seq"] for r in group if r.get("modality") != "image"})
        images = [r for r in group if r.get("modality") == "image"]
        text = "latency scenario; "
        text += f"text tower padded to {'/'.join(map(str, seqs))} tokens" if seqs else "no text tower cells"
        if images:
            sizes = sorted({r["seq"] for r in images})
            recipe = next((r["workload"].get("recipe") for r in images if (r.get("workload") or {}).get("recipe")),
                          None)
            text += (f", image tower {'/'.join(map(str, sizes))}px images"
                     + (f" ({recipe} preprocessing, timed apart from the model)" if recipe else ""))
        return text + ", seeded"
    if any(r.get("texts") for r in group):
        wl = next((r["workload"] for r in group if r.get("texts") and r.get("workload")), {})
        return (f"latency scenario; real texts ({wl.get('texts', 'a file')}, {wl.get('lines', '?')} lines) through "
                f"the model's own tokenizer ({wl.get('tokenizer', '?')}), padding {wl.get('padding', 'right')}; "
                "tokenizing timed apart from the model")
    return "latency scenario, inputs right-padded, seeded"


def setup_lines(rows: list[dict], bold: bool = False) -> list[str]:
    """One line per setup (model, source, weights, precision, device, threads, scenario)."""
    multimodal = multimodal_models(rows)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        key = (r["model"], r["source"], r["weights"], r["threads"], r["precision"], r["device"],
               r.get("scenario") or "latency")
        groups[key].append(r)
    out = []
    for key in sorted(groups, key=lambda t: tuple(str(x) for x in t)):
        model, source, weights, threads, precision, device, _ = key
        name = f"**{model}**" if bold else model
        out.append(f"{name} — source {source}, weights {weights}, {precision}, {device}, {threads} thread(s); "
                   f"{_scenario(groups[key], multimodal)}")
    return out


def md_table(headers: list[tuple[str, bool]], body: list[tuple[str, list]]) -> str:
    """headers: (label, numeric); body: (row css class, cells)."""
    lines = ["| " + " | ".join(h for h, _ in headers) + " |",
             "|" + "|".join("---:" if num else "---" for _, num in headers) + "|"]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in cells) + " |" for _, cells in body]
    return "\n".join(lines)


def _model_name(r: dict) -> str:
    return f"{r['model'].split('/')[-1]} ({r['source']})"


def _status(r: dict) -> str:
    return r["status"] if not r["reason"] else f"{r['status']}: {r['reason']}"


def throughput_rows(rows: list[dict]) -> tuple[list, list]:
    """Throughput-scenario cells, per model, batch, runtime and corpus order."""
    headers = [("model", False), ("runtime", False), ("batch", True), ("order", False), ("status", False),
               ("items/s", True), ("tokens/s", True), ("padded tokens/s", True), ("padding waste", True),
               ("passes", True), ("median pass s", True), ("GFLOP/s", True)]
    picked = sorted((r for r in rows if r.get("order")),
                    key=lambda r: (r["model"], r["source"], r["batch"], _runtime_rank(r["runtime"]),
                                   CORPUS_ORDER.get(r["order"], 9), r["run_id"]))
    body = [(r["status"], [
        _model_name(r), r["runtime"], r["batch"], r["order"], r["status"], _fmt(r.get("items_per_s"), ".1f"),
        _fmt(r.get("tokens_per_s"), ".0f"), _fmt(r.get("padded_tokens_per_s"), ".0f"),
        _fmt(r.get("padding_waste"), ".1%"), _fmt(r.get("passes"), "d"), _fmt(r.get("pass_median_s"), ".3f"),
        _fmt(r.get("gflops"), ".2f")]) for r in picked]
    return headers, body


def multimodal_rows(rows: list[dict]) -> tuple[list, list]:
    """Per multimodal model, runtime and batch: both towers side by side, preprocessing apart from model time."""
    multimodal = multimodal_models(rows)
    pairs: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        if r["model"] in multimodal and not r.get("order"):
            key = (r["model"], r["source"], r["precision"], r["device"], r["threads"], r["batch"],
                   _runtime_rank(r["runtime"]), r["runtime"], r["run_id"])
            pairs[key][r.get("modality") or "text"] = r
    headers = [("model", False), ("runtime", False), ("batch", True), ("status", False), ("texts/s", True),
               ("images/s", True), ("text tower ms/batch", True), ("image tower ms/batch", True),
               ("image tower ms/image", True), ("preprocess ms/image", True), ("preprocess ms/batch", True),
               ("zero-shot max Δp", True), ("top-1 agree", True)]
    body = []
    for key in sorted(pairs, key=lambda t: tuple(str(x) if not isinstance(x, int) else f"{x:09d}" for x in t)):
        towers = pairs[key]
        text, image = towers.get("text") or {}, towers.get("image") or {}
        any_row = text or image
        statuses = {m: t["status"] for m, t in towers.items()}
        status = "ok" if set(statuses.values()) == {"ok"} and len(statuses) == 2 else \
            ", ".join(f"{m} {s}" for m, s in sorted(statuses.items(), key=lambda kv: MODALITY_ORDER.get(kv[0], 9)))
        zero_shot = next((t.get("zero_shot_max_abs_prob_diff") for t in (text, image)
                          if t.get("zero_shot_max_abs_prob_diff") is not None), None)
        top1 = next((t.get("zero_shot_top1_agreement") for t in (text, image)
                     if t.get("zero_shot_top1_agreement") is not None), None)
        per_image = image.get("median_ms") / image["batch"] if image.get("median_ms") is not None else None
        body.append(("ok" if status == "ok" else "failed" if "failed" in status else "skipped", [
            _model_name(any_row), any_row["runtime"], any_row["batch"], status, _fmt(text.get("items_per_s"), ".1f"),
            _fmt(image.get("items_per_s"), ".1f"), _fmt(text.get("median_ms"), ".3f"),
            _fmt(image.get("median_ms"), ".3f"), _fmt(per_image, ".3f"),
            _fmt(image.get("preprocess_ms_per_image"), ".3f"), _fmt(image.get("preprocess_ms_batch"), ".3f"),
            _fmt(zero_shot, ".2e"), _fmt(top1, ".0%")]))
    return headers, body


def zero_shot_note(rows: list[dict]) -> str | None:
    """What the zero-shot column compares, from the first cell that has one."""
    r = next((r for r in rows if r.get("zero_shot_max_abs_prob_diff") is not None), None)
    if r is None:
        return None
    captions = r.get("zero_shot_captions")
    what = f"each image of the batch against a fixed set of {captions or 'the'} captions, "
    rule = f"{r['zero_shot_rule']} probabilities" if r.get("zero_shot_rule") else "probabilities"
    limits = {}
    for row in rows:
        if row.get("zero_shot_limit") is not None:
            limits.setdefault(row.get("precision") or "fp32", row["zero_shot_limit"])
    limit = ("; a cell fails above " + ", ".join(f"{v:g} ({k})" for k, v in limits.items())) if limits else ""
    return (f"zero-shot: {what}{rule} from the runtime's own text and image embeddings against those of the "
            f"PyTorch fp32 eager reference (max |Δp|){limit}")


def outputs_rows(rows: list[dict]) -> tuple[list, list]:
    """Per model, runtime, precision and shape measured in more than one output mode: each mode's median, its time
    over the dense cell's with the 95% CI of that ratio (measure.stats.ratio_ci over both cells' forks), what it hands
    its user per item and the loop's peak memory (docs/outputs.md)."""
    from embedperf.measure.stats import ratio_ci

    groups: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        if not r.get("order"):
            key = (r["model"], r["source"], precision_rank(r.get("precision") or "fp32"), r.get("precision"),
                   r.get("device"), r.get("threads"), r.get("machine") or "", r["batch"], r["seq"],
                   bool(r.get("texts")),
                   _runtime_rank(r["runtime"]), r["runtime"], r.get("run_id") or "")
            groups[key][r.get("outputs") or "dense"] = r
    headers = [("model", False), ("runtime", False), ("batch×seq", False), ("outputs", False), ("status", False),
               ("median ms", True), ("× dense (95% CI)", True), ("out KB/item", True), ("real-token KB/item", True),
               ("loop RSS MB", True), ("Δ loop RSS MB", True)]
    body = []
    for key in sorted(groups, key=lambda t: tuple(str(x) if not isinstance(x, int) else f"{x:09d}" for x in t)):
        modes = groups[key]
        if len(modes) < 2 and "dense" in modes:
            continue
        dense = modes.get("dense") or {}
        for mode in sorted(modes, key=lambda m: OUTPUTS_ORDER.get(m, 9)):
            r = modes[mode]
            ratio = "–"
            if mode == "dense":
                ratio = "1 (base)" if r["status"] == "ok" else "–"
            elif r["status"] == "ok" and dense.get("status") == "ok" and r.get("median_ms") and dense.get("median_ms"):
                if r.get("series") and dense.get("series"):
                    point, low, high = ratio_ci(r["series"], dense["series"])
                    ratio = f"{point:.3f} ({low:.3f}–{high:.3f})"
                else:
                    ratio = f"{r['median_ms'] / dense['median_ms']:.3f}"
            block = r.get("outputs_block") or {}
            real = block.get("colbert_real_bytes_per_item")
            if real is not None:
                real += sum(v for k, v in (block.get("bytes_per_item") or {}).items() if k != "colbert_vectors")
            delta = (r["loop_peak_rss_mb"] - dense["loop_peak_rss_mb"]
                     if mode != "dense" and r.get("loop_peak_rss_mb") is not None
                     and dense.get("loop_peak_rss_mb") is not None else None)
            body.append((r["status"], [
                _model_name(r), r["runtime"], f"{r['batch']}×{r['seq']}", mode, _status(r),
                _fmt(r.get("median_ms"), ".3f"),
                ratio, _fmt(block.get("bytes_per_item_total") / 1024 if block.get("bytes_per_item_total") else None,
                            ".1f"), _fmt(real / 1024 if real is not None else None, ".1f"),
                _fmt(r.get("loop_peak_rss_mb"), ".0f"), _fmt(delta, "+.0f")]))
    return headers, body


def sections(rows: list[dict], level: str = "##") -> list[str]:
    """The throughput, multimodal and output-mode sections as Markdown lines: empty when the rows have none."""
    out = []
    headers, body = throughput_rows(rows)
    if body:
        out += [f"{level} Throughput scenario", "",
                "items/s and tokens/s over whole corpus passes; padded tokens/s counts the padding the model also "
                "computes; padding waste = share of the padded tokens that are padding", "",
                md_table(headers, body), ""]
    headers, body = multimodal_rows(rows)
    if body:
        out += [f"{level} Multimodal towers", "",
                "texts/s and images/s at each tower's median call; tower ms are model time only, preprocessing "
                "(Python, measured apart) is shown separately"]
        note = zero_shot_note(rows)
        if note:
            out += ["", note]
        out += ["", md_table(headers, body), ""]
    headers, body = outputs_rows(rows)
    if body:
        out += [f"{level} Output modes: the cost over dense", "",
                "each mode returns the dense embedding too (sparse: + token weights and the lexical weights made from "
                "them in the call; colbert: + one vector per token after CLS); × dense: the mode's median over the "
                "dense cell's, with the 95% CI of the ratio over both cells' forks; out KB/item: what a call returns "
                "per item, padding included; real-token KB/item: the same with the multi-vectors of real tokens only "
                "(what a user keeps); Δ loop RSS: the timed loop's peak over the dense cell's", "",
                md_table(headers, body), ""]
    return out


def _bench(r: dict) -> tuple:
    """What one matrix table holds equal: precision, device, threads and machine (never mixed in one table)."""
    return (precision_rank(r.get("precision") or "fp32"), r.get("precision") or "fp32", r.get("device") or "cpu",
            r.get("threads") or 0, r.get("machine") or "")


def warning_notes(rows: list[dict]) -> dict[int, str]:
    """id(row) -> its mark ("⚠1"), numbering the rows that carry warnings in table order."""
    marks, n = {}, 0
    for r in rows:
        if r.get("warnings"):
            n += 1
            marks[id(r)] = f"⚠{n}"
    return marks


def _warning_text(w) -> str:
    return w if isinstance(w, str) else w.get("message", str(w))


def matrix_table(rows: list[dict], marks: dict[int, str] | None = None) -> list[str]:
    """One Markdown matrix table of rows that share a bench; a run column when they come from several runs."""
    marks = marks or {}
    gpu = any(r.get("gpu_peak_mb") is not None for r in rows)
    runs = len({r.get("run_id") for r in rows}) > 1
    tokenize = any(r.get("tokenize_ms_batch") is not None for r in rows)
    recall = any(r.get("recall_at_10") is not None for r in rows)
    lines = ["| model | runtime | batch×seq | status | " + ("run | " if runs else "")
             + "median ms | 95% CI ms | p90 ms | CV | items/s | " + ("tokenize ms | " if tokenize else "")
             + "FLOPs | GFLOP/s | % peak | stop | load s | "
             "first call s | peak RSS MB | loop RSS MB | " + ("GPU peak MB | " if gpu else "") + "disk MB | min cos |"
             + (" recall@10 |" if recall else ""),
             "|---|---|---|---|" + ("---|" if runs else "") + "---:|---:|---:|---:|---:|" + ("---:|" if tokenize else "")
             + "---:|---:|---:|---|---:|---:|---:|---:|" + ("---:|" if gpu else "") + "---:|---:|"
             + ("---:|" if recall else "")]
    for r in rows:
        ci = (f"{_fmt(r['ci_low_ms'], '.3f')}–{_fmt(r['ci_high_ms'], '.3f')}"
              if r["ci_low_ms"] is not None else "–")
        status = _status(r) + (f" {marks[id(r)]}" if id(r) in marks else "")
        lines.append(
            f"| {r['model'].split('/')[-1]} | {r['runtime']} | {r['shape']} | {status} | "
            + (f"{r.get('run_id') or '–'} | " if runs else "")
            + f"{_fmt(r['median_ms'], '.3f')} | {ci} | {_fmt(r['p90_ms'], '.3f')} | {_fmt(r['cv'], '.1%')} | "
            f"{_fmt(r['items_per_s'], '.1f')} | "
            + (f"{_fmt(r.get('tokenize_ms_batch'), '.3f')} | " if tokenize else "")
            + f"{fmt_flops(r.get('flops'), bool(r.get('order')))} | "
            f"{_fmt(r.get('gflops'), '.2f')} | {_fmt(r.get('share_of_peak'), '.1%')} | {r.get('stop_rule') or '–'} | "
            f"{_fmt(r['load_s'], '.2f')} | {_fmt(r['first_call_s'], '.3f')} | "
            f"{_fmt(r['peak_rss_mb'], '.0f')} | {_fmt(r['loop_peak_rss_mb'], '.0f')} | "
            + (f"{_fmt(r.get('gpu_peak_mb'), '.0f')} | " if gpu else "")
            + f"{fmt_mb(r.get('size_on_disk_bytes'))} | {_fmt(r['min_cosine'], '.6f')} |"
            + (f" {_fmt(r.get('recall_at_10'), '.3f')} |" if recall else "")
        )
    return lines


def table(cells: list[dict], with_sections: bool = True) -> str:
    """The Markdown matrix: one table per bench (precision, device, threads, machine), each cell's warnings marked
    in its row (⚠n) and written out under the table, then the frameworks' versions.

    With `with_sections`, the throughput and multimodal sections follow when such cells exist.
    """
    rows = rows_of(cells)
    if not rows:
        return "_no cells_\n"
    lines = setup_lines(rows, bold=True)
    benches: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        benches[_bench(r)].append(r)
    marks = warning_notes([r for key in sorted(benches) for r in benches[key]])
    for key in sorted(benches):
        _, precision, device, threads, machine = key
        lines.append("")
        if len(benches) > 1:
            lines += [f"**{precision}, {device}, {threads} thread(s)" + (f", {machine}" if machine else "") + "**", ""]
        lines += matrix_table(benches[key], marks)
    if any(r.get("flops") for r in rows):
        lines += ["", "median: of the forks' medians (calls; whole passes for throughput); items/s: rows per second "
                      "at that median; FLOPs: matmul FLOPs per call (/pass: per corpus pass); GFLOP/s at the median; "
                      "% peak of the calibrated peak of the cell's own precision (– without one); stop: the rule that "
                      "ended the timed loop of each fork; disk MB: what the runtime loads from disk"
                      + ("; tokenize ms: the batch's tokenization by the model's own tokenizer, timed apart (not "
                         "in median ms)" if any(r.get("tokenize_ms_batch") is not None for r in rows) else "")
                      + ("; min cos: the worst fork's output against the fp32 reference; recall@10: of the fp32 "
                         "top-10 neighbours over the accuracy corpus" if any(r.get("recall_at_10") is not None
                                                                           for r in rows) else "")]
    noted = [r for key in sorted(benches) for r in benches[key] if id(r) in marks]
    if noted:
        lines += ["", f"Warnings ({sum(len(r['warnings']) for r in noted)} in {len(noted)} cell(s)):"]
        for r in noted:
            text = "; ".join(_warning_text(w) for w in r["warnings"])
            lines.append(f"- {marks[id(r)]} {r['model'].split('/')[-1]} {r['runtime']} {r['shape']}"
                         + (f" [{r['precision']}]" if len(benches) > 1 else "") + f": {text}")
    versions = versions_line([c for c in cells if "schema" in c])
    if versions:
        lines += ["", versions]
    if with_sections:
        extra = sections(rows)
        if extra:
            lines += [""] + extra[:-1]
    return "\n".join(lines) + "\n"


def _us(ns: float) -> str:
    return f"{ns / 1e3:.2f} µs"


def run_overhead_lines(cells: list[dict]) -> list[str]:
    """Each run's per-language harness cost (`harness_overhead_ns`, null runners at run start), said once per run
    (once in all when every run measured the same)."""
    runs: dict[str, dict] = {}
    for c in cells:
        overhead = c.get("harness_overhead_ns") if "schema" in c else None
        if overhead and c.get("run_id") not in runs:
            runs[c.get("run_id")] = overhead
    distinct = {tuple(sorted(v.items())) for v in runs.values()}
    out = []
    for run_id, overhead in sorted(runs.items(), key=lambda kv: str(kv[0])):
        langs = sorted(overhead, key=lambda k: (LANGUAGES.index(k) if k in LANGUAGES else 9, k))
        where = f"run {run_id}, " if len(distinct) > 1 else ""
        out.append(f"harness overhead per call ({where}null runners at run start): "
                   + ", ".join(f"{lang} {_us(overhead[lang])}" for lang in langs))
        if len(distinct) == 1:
            break
    return out


def overhead_lines(cells: list[dict]) -> str:
    """Per-call harness overhead: each language's null runner at run start (once per run), then the null cells."""
    out = run_overhead_lines(cells)
    for r in sorted((row_of(c) for c in cells), key=sort_key):
        if r["runtime"].startswith("null") and r["median_ms"] is not None:
            shape = f"corpus b{r['batch']} {r['order']}" if r.get("order") else f"batch {r['batch']} × seq {r['seq']}"
            out.append(f"harness overhead per call ({r['runtime']}, {shape}): "
                       f"median {r['median_ms'] * 1e3:.2f} µs, p99 {r['p99_ms'] * 1e3:.2f} µs over {r['n']} calls")
    return "\n".join(out)
