"""One sweep, start to finish, into a run directory: meta.json first, each cell appended as it finishes,
final tables written at the end whatever happens (normal end, error or interruption).

This is the plain function behind ``devbench sweep``; the CLI adds argument parsing and the progress bar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from devbench.guards import Guard, MemoryGuard
from devbench.runner import Backend, CellResult, run_sweep
from devbench.spec import Cell, SweepSpec
from devbench.store import CellLog, Run, finalize, new_meta, prepare_run_dir, utc_now, write_json


def execute(
    spec: SweepSpec,
    run_dir: Path,
    *,
    argv: Sequence[str] = (),
    backend: Backend | None = None,
    on_start: Callable[[Cell], None] | None = None,
    on_result: Callable[[CellResult], None] | None = None,
    guard: Guard | None = None,
) -> Run:
    """Measure every cell of ``spec`` into ``run_dir`` (created if needed) and return the finished run.

    With no ``backend`` the TensorFlow one is used (importing TensorFlow), and the machine fingerprint
    includes TF's build and device details. With no ``guard`` the memory guard protects the sweep.
    """
    from devbench.machine import fingerprint

    prepare_run_dir(run_dir)
    if backend is None:
        from devbench.backend import TFBackend
        from devbench.devices import discover, tensorflow_fingerprint

        backend = TFBackend()
        machine = fingerprint(tensorflow_fingerprint(), [d.as_dict() for d in discover()])
    else:
        machine = fingerprint()
    run_id = run_dir.name
    meta = new_meta(spec.to_dict(), machine, run_id, argv)
    write_json(run_dir / "meta.json", meta)
    log = CellLog(run_dir)

    def record(result: CellResult) -> None:
        log.append(result.record, result.samples)
        if on_result is not None:
            on_result(result)

    status = "interrupted"
    try:
        run_sweep(spec, backend, run_id, on_result=record, on_start=on_start,
                  guard=guard if guard is not None else MemoryGuard())
        status = "complete"
    finally:
        results, samples = finalize(run_dir)
        meta.update(status=status, finished_at=utc_now(), n_cells=len(results))
        write_json(run_dir / "meta.json", meta)
    return Run(path=run_dir, meta=meta, results=results, samples=samples)
