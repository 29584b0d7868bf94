"""Issue 6's figures from a run directory: the calibrated ceilings, pct_of_peak of matmul float32 at 2048, the
eager - graph_loop dispatch gap at n=64, and the numpy-vs-TF crossover (resident, and with transfer).

Run: ``PYTHONPATH=src python bench/roofline_figures.py RUN_DIR``, for example after
``devbench sweep --sizes 16..2048 --ops matmul,add,dense_step --modes eager,graph_loop --baseline numpy``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from devbench.analysis import crossover_frame
from devbench.calibrate import render_calibration
from devbench.fidelity import dispatch_gap, dispatch_gap_by_device
from devbench.spec import NUMPY_DEVICE
from devbench.store import load_run


def main(argv: list[str]) -> int:
    run = load_run(Path(argv[0]))
    results = run.results
    pd.set_option("display.width", 200)
    if run.meta.get("calibration"):
        print("\n".join(render_calibration(run.meta["calibration"])))
    else:
        print("no calibration in meta.json (--no-calibrate): pct_of_peak is empty")
    print("\npct_of_peak, matmul float32 at n=2048:")
    cells = results[(results["op"] == "matmul") & (results["dtype"] == "float32") & (results["size"] == 2048)]
    print(cells[["device", "mode", "sync", "median_s", "gflops", "pct_of_peak", "rel_iqr"]].to_string(index=False))
    gaps = dispatch_gap(results)
    print("\ndispatch gap (eager - graph_loop) at n=64, microseconds per call:")
    for row in gaps[gaps["size"] == 64].itertuples():
        print(f"  {row.op:<18} {row.device:<6} eager {row.eager_s * 1e6:9.1f}  graph_loop {row.graph_loop_s * 1e6:9.1f}"
              f"  gap {row.gap_s * 1e6:9.1f} ({row.gap_fraction:.0%})")
    print(dispatch_gap_by_device(results).to_string(index=False))
    columns = ["op", "dtype", "mode", "device_a", "device_b", "crossover_size", "low", "high", "faster_below",
               "faster_above"]
    for name, subset in (("resident", results[results["sync"] != "transfer"]),
                         ("with transfer", results[results["sync"] == "transfer"])):
        if subset.empty:
            continue
        frame = crossover_frame(subset)
        frame = frame[(frame["device_a"] == NUMPY_DEVICE) | (frame["device_b"] == NUMPY_DEVICE)]
        print(f"\nnumpy vs TF crossover ({name}):")
        print(frame[columns].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
