"""Planning: from a run spec to cells, and from cells to the order their forks run in.

A cell is (model, runtime, precision, device, scenario, shape); a shape also says which outputs its calls
return (the output mode: dense, or BGE-M3's sparse / colbert / all beside it). It is measured in k forks: k
separate runner processes, each loading the model afresh, because one process is one draw of the
machine's fast or slow mode. A fork job is one runner process: one runtime on one tower of one
model in one output mode (one graph), timing all the shapes of that group that still need this fork.
Within a model the jobs run in rounds, each round a seeded random permutation of the groups (A C B,
B A C, ...), so drift, heat and a noisy neighbour fall on every runtime alike (asv's interleaving,
randomised as google/benchmark does).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from embedperf.models.registry import ModelSpec
from embedperf.models.sources import Located
from embedperf.prepare.cache import Prepared
from embedperf.spec import ModelChoice, RunSpec
from embedperf.workload import corpus

# Forks per cell when the run does not say. Throughput forks are fewer: one fork's whole corpus
# passes already take many seconds each, and two processes are enough to reveal a process-level mode.
DEFAULT_FORKS = {"latency": 3, "throughput": 2}


@dataclass(frozen=True)
class Shape:
    """One cell's input: the tower it feeds, a batch size and a length; the corpus order for throughput; and the
    output mode its calls return (registry.OUTPUT_MODES: dense, or BGE-M3's token outputs beside it).

    For an image tower `seq` is the image side in pixels; for a throughput corpus it is the longest item.
    """

    modality: str
    batch: int
    seq: int
    order: str | None = None  # throughput: sorted | unsorted
    texts: bool = False  # --text: real texts through the model's tokenizer (seq: the padded width)
    outputs: str = "dense"

    def label(self, tower: bool = False) -> str:
        mode = "" if self.outputs == "dense" else f" {self.outputs}"
        if self.order:
            return f"b{self.batch} corpus {self.order}"
        if self.texts:
            return f"b{self.batch} s{self.seq} texts" + mode
        if self.modality == "image":
            return f"b{self.batch} image {self.seq}px"
        return f"b{self.batch} s{self.seq}" + (" text" if tower else "") + mode

    @property
    def size(self) -> int:
        """What orders shapes inside a runner: smaller first, so a shape's memory is not inflated by
        pools a larger shape grew earlier in the same process."""
        return self.batch * self.seq


@dataclass(frozen=True)
class Load:
    """A workload file on disk and the facts about it that cells report."""

    path: Path
    facts: dict


@dataclass
class ModelPlan:
    """One model of the run, resolved: where it comes from and what was prepared."""

    choice: ModelChoice
    spec: ModelSpec
    located: Located | None = None
    prepared: Prepared | None = None
    error: str | None = None
    texts: dict | None = None  # --text: each Shape's tokenized workload (workload/texts.py), made when planned


@dataclass(frozen=True)
class ForkJob:
    """One runner process: fork `fork` of `runtime` at one precision on one tower of a model in one output mode,
    over `shapes` (smallest first)."""

    runtime: str
    precision: str
    modality: str
    fork: int
    forks: int
    shapes: tuple[Shape, ...]
    outputs: str = "dense"

    @property
    def group(self) -> tuple[str, str, str, str]:
        """(runtime, precision, modality, outputs): what one runner process loads."""
        return (self.runtime, self.precision, self.modality, self.outputs)


def forks_of(spec: RunSpec) -> int:
    """How many forks each cell of this run gets."""
    return spec.timing.forks or DEFAULT_FORKS[spec.scenario]


def corpus_lengths(spec: RunSpec, plan: ModelPlan):
    """The throughput corpus' item lengths for this model (clipped to what it accepts)."""
    c = spec.corpus
    high = min(c.high, plan.spec.length_limit(plan.choice.source))
    return corpus.lengths(n=c.items, median=c.median, sigma=c.sigma, low=min(c.low, high), high=high, seed=c.seed)


def text_shapes(spec: RunSpec, plan: ModelPlan) -> dict:
    """--text: one shape per batch (and --seq) with its tokenized workload, made once per plan.

    A real-text batch is padded to its longest text (or to --seq), so its width is known only once the
    model's own tokenizer has read the texts: that is done here, and tokenizing is timed apart."""
    if plan.texts is None:
        from embedperf.paths import workloads_dir
        from embedperf.workload import texts

        c = plan.choice
        lines = texts.read_texts(Path(spec.texts))
        folder = texts.snapshot_folder(plan.spec, c.source, c.path, c.revision)
        plan.texts = {}
        for b in spec.batch:
            for s in spec.seq or [None]:
                w = texts.ensure(plan.spec, folder, lines, spec.texts, b, s, workloads_dir())
                for mode in spec.outputs:
                    plan.texts[Shape("text", b, w.seq, texts=True, outputs=mode)] = w
    return plan.texts


def shapes_for(spec: RunSpec, plan: ModelPlan) -> list[Shape]:
    """The shapes of one model's cells (each runtime gets all of them)."""
    model, source = plan.spec, plan.choice.source
    if spec.texts:
        return list(text_shapes(spec, plan))
    if spec.scenario == "throughput":
        longest = int(corpus_lengths(spec, plan).max())
        return [Shape("text", b, longest, order) for b in spec.batch for order in ("sorted", "unsorted")]
    if model.multimodal:
        return [Shape(m, b, model.seq_for(m, source)) for m in model.modalities for b in spec.batch]
    return [Shape("text", b, s, outputs=mode) for mode in spec.outputs for b in spec.batch for s in spec.seq]


def fork_schedule(groups: dict[tuple[str, ...], list[Shape]], forks: int, seed: int,
                  needed=lambda group, shape, fork: True) -> list[ForkJob]:
    """The fork jobs of one model in run order: `forks` rounds, each a seeded shuffle of the groups.

    `groups` maps (runtime, precision, modality[, outputs]) to its shapes; `needed(group, shape, fork)` says
    whether that fork of that cell still has to run (False for forks kept from an interrupted run),
    and a job with no shape left is dropped.
    """
    rng = random.Random(seed)
    keys = list(groups)
    jobs = []
    for fork in range(forks):
        order = keys[:]
        rng.shuffle(order)
        for group in order:
            shapes = tuple(sorted((x for x in groups[group] if needed(group, x, fork)),
                                  key=lambda x: (x.size, x.batch, x.order or "")))
            if shapes:
                runtime, precision, modality, *mode = group
                jobs.append(ForkJob(runtime, precision, modality, fork, forks, shapes, *mode))
    return jobs
