"""Subcommands about the machine rather than a run: ``devices``, ``ops`` and ``calibrate``.

``ops`` needs no TensorFlow (it must stay fast); ``devices`` and ``calibrate`` import it.
"""

from __future__ import annotations

import argparse

from devbench.cli.options import Subcommands, UsageParser, add_command, add_devices_option, add_dtypes_option
from devbench.errors import choose_list
from devbench.spec import DTYPES


def register(sub: Subcommands[UsageParser]) -> None:
    add_command(sub, "devices", cmd_devices, help="list the devices TensorFlow sees, with details",
                description="List the devices TensorFlow sees (imports TensorFlow).")
    add_command(sub, "ops", cmd_ops, help="list the ops and what n means for each",
                description="List the ops, what the size n means for each, and their FLOPs per call.")
    calibrate = add_command(
        sub, "calibrate", cmd_calibrate,
        help="measure each device's peak FLOP/s (per dtype) and memory bandwidth",
        description="Measure the roofline of each device: the best GEMM rate per dtype (numpy/OpenBLAS on the "
        "host, TensorFlow on every device) and the bandwidth of a large copy (bytes read + written per "
        "second). A sweep does this at its start and stores it in meta.json (unless --no-calibrate).")
    add_devices_option(calibrate, "CPU:0 and every GPU")
    add_dtypes_option(calibrate)
    calibrate.add_argument("--json", action="store_true", help="print the calibration as JSON")


def cmd_devices(args: argparse.Namespace) -> int:
    del args
    from rich.console import Console
    from rich.table import Table

    from devbench.devices import discover, tensorflow_fingerprint
    from devbench.machine import cpu_model

    tf_info = tensorflow_fingerprint()
    table = Table(title=f"TensorFlow {tf_info['version']} devices")
    for column in ("device", "kind", "name", "memory", "compute capability", "details"):
        table.add_column(column, no_wrap=column == "device")
    for device in discover():
        details = dict(device.details)
        name = str(details.pop("device_name", cpu_model() if device.kind == "CPU" else ""))
        capability = str(details.pop("compute_capability", ""))
        limit = details.pop("memory_limit_bytes", None)
        if device.kind == "CPU":
            import psutil

            limit = psutil.virtual_memory().total  # host memory, shared by every logical CPU device
        memory = f"{limit / 2**30:.1f} GiB" if limit else ""
        rest = ", ".join(f"{k}={v}" for k, v in details.items())
        table.add_row(device.name, device.kind, name, memory, capability, rest)
    Console().print(table)
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    del args
    from rich.console import Console
    from rich.table import Table

    from devbench.ops import OPS

    table = Table(title="devbench ops (n is the size given to --sizes)")
    for column in ("op", "n means", "FLOPs/call", "dtypes", "what it times"):
        table.add_column(column, no_wrap=column == "op")
    for op in OPS.values():
        table.add_row(op.name, op.n_means, op.flops_formula, ", ".join(op.dtypes), op.summary)
    Console().print(table)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``devbench calibrate``: the roofline of each device (see devbench.calibrate)."""
    from devbench.devices import check_names

    dtypes = choose_list("dtype", args.dtypes, DTYPES)
    check_names(args.devices)
    from devbench.calibrate import calibrate_devices, render_calibration
    from devbench.devices import discover, resolve

    devices = resolve(args.devices, [d.name for d in discover()])
    calibration = calibrate_devices(devices, dtypes)
    if args.json:
        import json

        print(json.dumps(calibration, indent=2))
    else:
        print("\n".join(render_calibration(calibration)))
    return 0
