"""Live progress bars (tqdm, on stderr) for the long sub-commands.

The library reports progress through plain callbacks (``progress(done, total)``, a
``JobProgress`` per unit, ...) and never imports tqdm for it; these adapters turn those calls
into one bar per unit of work, with rate and ETA. ``--quiet`` gives disabled bars.
"""

from __future__ import annotations

import sys
from typing import Any


class Bar:
    """A tqdm bar fed with ``bar(done, total)``: created on the first call, closed at the end.

    Parameters
    ----------
    desc
        Label shown in front of the bar.
    unit
        Name of one unit of work ("unit", "chunk", "region", "step").
    quiet
        No bar at all.
    """

    def __init__(self, desc: str, unit: str, quiet: bool = False) -> None:
        self.desc, self.unit, self.quiet = desc, unit, quiet
        self._bar: Any = None
        self._finished = False

    def __call__(self, done: int, total: int, postfix: str | None = None) -> None:
        """Show ``done`` of ``total`` units (and ``postfix`` after the bar)."""
        if self.quiet or (self._finished and done >= total):
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            # initial=done: a resumed job's ETA counts only this run's speed
            self._bar = tqdm(total=total, initial=done, desc=self.desc, unit=self.unit,
                             file=sys.stderr, dynamic_ncols=True, smoothing=0.1)  # fmt: skip
        bar = self._bar
        if bar.total != total:
            bar.total = total
        if postfix is not None:
            bar.set_postfix_str(postfix, refresh=False)
        if done != bar.n:
            bar.update(done - bar.n)
            bar.n = done  # exact, also for fractions of a unit
        if done >= total:
            self._finished = True
            self.close()

    def close(self) -> None:
        """Finish the bar (its last line stays on the terminal)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StageBars:
    """One :class:`Bar` per stage name: ``bars(stage, done, total)`` (the demo's stages)."""

    def __init__(self, unit: str = "unit", quiet: bool = False) -> None:
        self.unit, self.quiet = unit, quiet
        self._bars: dict[str, Bar] = {}
        self._current: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Advance the bar of ``stage`` (finishing the previous stage's bar)."""
        if stage != self._current and self._current is not None:
            self._bars[self._current].close()
        self._current = stage
        if stage not in self._bars:
            self._bars[stage] = Bar(stage, self.unit, self.quiet)
        self._bars[stage](done, total)

    def close(self) -> None:
        """Finish every bar."""
        for bar in self._bars.values():
            bar.close()


class JobBar:
    """A generation job's bar that moves inside units as well as between them.

    Whole units come from each ``JobProgress``, the part of the running unit from
    ``part(done, total)`` (blocks of a span unit).

    Call it with each ``JobProgress``; pass :meth:`part` as ``run_job(on_block=...)``.
    """

    def __init__(self, quiet: bool, done: int = 0, total: int = 0) -> None:
        self.bar = Bar("generate", "unit", quiet)
        self._done = done
        self._total = total
        self._postfix = ""

    def __call__(self, p: Any) -> None:
        """Show a finished unit."""
        step = min(p.step + 1, p.n_steps)
        self._done, self._total = p.units_done, p.units_total
        self._postfix = f"step {step}/{p.n_steps}"
        self.bar(p.units_done, p.units_total, postfix=self._postfix)

    def part(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` blocks of the running unit."""
        if not self._total or done >= total:
            return  # the unit's own JobProgress follows
        self.bar(round(self._done + done / total, 3), self._total,
                 postfix=f"{self._postfix} block-step {done}/{total}")  # fmt: skip


def job_bar(quiet: bool, job_dir: Any = None) -> tuple[JobBar, Bar]:
    """A ``progress(JobProgress)`` callback for generation jobs, and its bar (to close).

    With ``job_dir`` the bar knows the job's units before the first one finishes.
    """
    done = total = 0
    if job_dir is not None:
        from napari_teramind.generate.job import JobDir

        job = JobDir(job_dir)
        done, total = job.units_done(), job.units_total
    jb = JobBar(quiet, done, total)
    return jb, jb.bar
