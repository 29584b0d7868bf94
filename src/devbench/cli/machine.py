"""Subcommands about the machine rather than a run: ``devices``, ``ops`` and ``calibrate``.

``ops`` needs no framework (it must stay fast); ``devices`` imports every installed framework, ``calibrate``
TensorFlow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from devbench.cli.options import Subcommands, UsageParser, add_command, add_devices_option, add_dtypes_option
from devbench.errors import choose_list
from devbench.spec import DTYPES


def register(sub: Subcommands[UsageParser]) -> None:
    add_command(sub, "devices", cmd_devices,
                help="list the devices of every installed framework (TensorFlow, JAX, PyTorch), with details",
                description="List the devices of every installed framework (imports each), and say which "
                "frameworks are missing and how to install them.")
    ops = add_command(sub, "ops", cmd_ops, help="list the ops and what n means for each",
                      description="List the ops, what the size n means for each, their dimensions, FLOPs per "
                      "call and frameworks; with --op-file, the ops of those files.")
    ops.add_argument("--op-file", action="append", type=Path, default=[], metavar="FILE",
                     help="list the ops of this file of your own ops instead (repeatable; checks it as a sweep "
                     "would load it)")
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
    """``devbench devices``: every installed framework's devices, then one line per framework that is missing."""
    del args
    from rich.console import Console
    from rich.table import Table

    from devbench.devices import FRAMEWORKS, discover_frameworks
    from devbench.machine import cpu_model

    found = discover_frameworks()
    versions = ", ".join(f"{FRAMEWORKS[key].label} {version}" for key, version in found.versions.items())
    table = Table(title=f"devices ({versions or 'no framework installed'})")
    for column in ("device", "framework", "kind", "name", "memory", "compute capability", "details"):
        table.add_column(column, no_wrap=column == "device")
    for device in found.devices:
        details = dict(device.details)
        gpu_name = str(details.pop("device_name", ""))
        name = cpu_model() if device.kind == "CPU" else gpu_name
        capability = str(details.pop("compute_capability", ""))
        limit = details.pop("memory_limit_bytes", None)
        if device.kind == "CPU":
            import psutil

            limit = psutil.virtual_memory().total  # host memory, shared by every CPU device of every framework
        memory = f"{limit / 2**30:.1f} GiB" if limit else ""
        rest = ", ".join(f"{k}={v}" for k, v in details.items())
        table.add_row(device.name, FRAMEWORKS[device.framework].label, device.kind, name, memory, capability, rest)
    Console().print(table)
    for key, reason in found.missing.items():
        framework = FRAMEWORKS[key]
        print(f"{framework.label}: {reason}, so its devices are not listed; to install: {framework.install}")
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from devbench.ops import OPS
    from devbench.userops import describe, load_sources

    files = args.op_file
    from_files = load_sources(files)  # installed packages' ops too: they are listed with the built-ins
    names = from_files if files else list(OPS)
    where = f"ops in {', '.join(str(f) for f in files)}" if files else "devbench ops"
    table = Table(title=f"{where} (n is the size given to --sizes)")
    for column in ("op", "dims", "n means", "FLOPs/call", "dtypes", "frameworks", "what it times"):
        table.add_column(column, no_wrap=column == "op")
    for name in names:
        op, more = OPS[name], describe(name)
        table.add_row(op.name, more["dims"], op.n_means, op.flops_formula, ", ".join(op.dtypes),
                      more["frameworks"], op.summary)
    Console().print(table)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``devbench calibrate``: the roofline of each device (see devbench.calibrate)."""
    from devbench.devices import check_names

    dtypes = choose_list("dtype", args.dtypes, DTYPES)
    check_names(args.devices)
    from devbench.calibrate import calibrate_devices, render_calibration
    from devbench.devices import discover, resolve

    devices = resolve(args.devices, [d.name for d in discover()])  # TF's devices: calibration probes TF
    calibration = calibrate_devices(devices, dtypes)
    if args.json:
        import json

        print(json.dumps(calibration, indent=2))
    else:
        print("\n".join(render_calibration(calibration)))
    return 0
