"""Progress of a long run: steps done (runner loads and fork-shapes), the current runner, time left.

On a terminal, a rich progress bar stays at the bottom while the run's lines scroll above it; when
output goes to a file or a pipe (CI logs, `tee`), plain lines only, each cell line carrying the
estimate of time left, so a log reads the same as the screen without control characters.
"""

from __future__ import annotations

import contextlib
import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts steps as they finish and estimates the time left from the pace so far.

    A run's work is known model by model (a model's schedule of forks is planned once it is
    prepared), so the total grows with `extend` as models start and shrinks for forks not needed.
    """

    def __init__(self, say=print, stream=None):
        self._plain_say = say
        self.stream = stream or sys.stdout
        self.total = 0
        self.done = 0
        self.started: float | None = None
        self._bar = None
        self._task = None

    @property
    def interactive(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def say(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            self._plain_say(message)

    @contextlib.contextmanager
    def running(self, total: int, unit: str = "cells"):
        """Show progress for `total` steps (more may be added with `extend`) while the block runs."""
        self.total, self.done, self.started = total, 0, time.monotonic()
        if not self.interactive:
            yield self
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn(unit), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                           transient=False)
        with bar:
            self._bar, self._task = bar, bar.add_task("starting", total=total)
            try:
                yield self
            finally:
                self._bar = self._task = None

    def current(self, label: str) -> None:
        """Name the work under way (the runner process and model)."""
        if self._bar is not None:
            self._bar.update(self._task, description=label)

    def extend(self, steps: int) -> None:
        """Add steps to the total (negative: steps that turned out not to be needed)."""
        self.total = max(self.done, self.total + steps)
        if self._bar is not None:
            self._bar.update(self._task, total=self.total)

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self._bar is not None:
            self._bar.update(self._task, advance=steps)

    def eta(self) -> str | None:
        """Estimated time left, from the average time per step so far (None before the first step).

        Steps are runner loads and fork-shapes: close enough in cost within a model to pace a run,
        and the estimate says "about"."""
        if not self.started or not self.done or self.done >= self.total:
            return None
        per_step = (time.monotonic() - self.started) / self.done
        return f"about {_duration(per_step * (self.total - self.done))}"
