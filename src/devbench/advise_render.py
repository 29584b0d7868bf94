"""How a placement advice (:mod:`devbench.advise`) reads: sentences and tables, every number through
:mod:`devbench.formatting`, shared by ``devbench advise`` (text, Markdown, JSON), report.md and report.html, so
the three say the same thing in the same words."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from devbench.advise import CONFIDENCE, FIT_FORM, Advice, BreakEven, DeviceFit, GroupAdvice, Range, t_half
from devbench.formatting import format_size, format_time
from devbench.shapes import axis_name

# What a person reads: sentences and tables, rendered by the CLI (text, Markdown, JSON), report.md and report.html


Table = tuple[str, tuple[str, ...], list[list[str]]]
"""(caption, headers, rows) of one table, every cell already text."""


def choice(r: Range) -> str:
    """The device to use in a range: 'GPU:0', 'CPU:0 or GPU:0 (within noise)', 'GPU:0 (no interval)'."""
    if not r.judged:
        return f"{r.device} (no interval)"
    return r.device if not r.also else " or ".join((r.device, *r.also)) + " (within noise)"


def sizes(r: Range) -> str:
    return f"{format_size(r.low)}–{format_size(r.high)}"


def _count(n: float) -> str:
    if math.isinf(n):
        return "never"
    return f"{math.ceil(n):,}" if n < 1e6 else f"{n:.2g}"


def calls_text(b: BreakEven) -> str:
    """'1,234 [800, 2,100]', 'never (not faster per call)', '1 (from the first call) [1, 3]'."""
    if math.isinf(b.calls):
        return "never (not faster per call)" + (f" [{_count(b.calls_low)}, never]" if math.isfinite(b.calls_low)
                                                else "")
    head = "1 (from the first call)" if b.calls <= 1 else _count(b.calls)
    if math.isfinite(b.calls_low) or math.isinf(b.calls_high):
        return f"{head} [{_count(max(b.calls_low, 1.0))}, {_count(max(b.calls_high, 1.0))}]"
    return head


def title(group: GroupAdvice) -> str:
    return " · ".join(group.key) + f" (sync {', '.join(group.syncs)})"


def summary(group: GroupAdvice) -> str:
    """One sentence: the device to use by size range over N calls."""
    if not group.ranges:
        return "no advice: " + ("; ".join(group.notes) or "fewer than two devices fitted")
    return f"over {group.calls:,} calls: " + "; ".join(f"{choice(r)} for n {sizes(r)}" for r in group.ranges)


def _fixed(seconds: float) -> str:
    """The fixed cost a: '0' below a nanosecond (the fit put it on its bound), else a time."""
    return "0" if seconds < 1e-9 else format_time(seconds)


def _parameter(fit: DeviceFit, name: str, shift: float = 0.0) -> str:
    """A fitted parameter (plus ``shift``) with its 95 % t interval over the per-round refits: a time for the
    fixed cost ``a``, else a number."""
    value = getattr(fit.fit, name) + shift
    show = _fixed if name == "a" else (lambda v: f"{v:.2f}")
    if fit.reason:
        return show(value)
    spread = np.array([getattr(f, name) for f in fit.round_fits])
    half = float(t_half(spread[:, None])[0])
    return f"{show(value)} [{show(max(value - half, 0.0) if name == 'a' else value - half)}, {show(value + half)}]"


def group_sentences(group: GroupAdvice) -> list[str]:
    """The group's answer in words: who is compared, the device by size range, the break-even, the notes."""
    out = []
    if group.roles:
        out.append(group.roles[0].upper() + group.roles[1:] + ".")
    said = summary(group)
    out.append(said[0].upper() + said[1:] + ".")
    for accelerator in group.accelerators:
        rows = [b for b in group.break_even if b.accelerator == accelerator]
        if rows:
            out.append(break_even_sentence(rows[-1], group.baseline, axis_name(group.key[0])))
    fits = list(group.fits.values())
    reasons = sorted({f.reason for f in fits if f.reason})
    if fits and not reasons:
        rounds = min(len(f.round_ids) for f in fits)
        out.append(f"Intervals: 95 %, from refitting each of {rounds} rounds (the unit is the round).")
    axis = axis_name(group.key[0])
    stepped = [f"{d} from {axis}={f.fit.step_at:g}" for d, f in group.fits.items() if f.fit.has_step]
    if stepped:
        out.append("One power law left cells outside their intervals, so the fit takes a step: "
                   + "; ".join(stepped) + ".")
    out.extend(f"No interval: {r}." for r in reasons)
    out.extend(n[0].upper() + n[1:] + "." for n in group.notes)
    return out


def break_even_sentence(b: BreakEven, baseline: str, axis: str = "n") -> str:
    """'Moving to GPU:0 pays from 1,234 calls at n=4096 (95 %: 800–2,100).' and its "never" and "first call"
    forms, at the largest size both devices measured (``axis``: what the size measures, m for a shaped curve)."""
    where = f"at {axis}={b.size} (the largest size both measured)"
    if math.isinf(b.calls):
        return f"{b.accelerator} is not faster per call than {baseline} {where}: moving there never pays."
    when = "from the first call" if b.calls <= 1 else f"from {_count(b.calls)} calls"
    low, high = _count(max(b.calls_low, 1.0)), _count(max(b.calls_high, 1.0))
    spread = f"; 95 %: {low}–{high} calls" if math.isfinite(b.calls_low) and low != high else ""
    return f"Moving to {b.accelerator} pays {when} {where}{spread}."


def _seconds(values: npt.NDArray[np.float64]) -> str:
    """A one-time cost over the sizes: 'none', one time, or 'smallest … largest'."""
    if not np.any(values):
        return "none"
    first, last = (_fixed(float(v)) for v in (values[0], values[-1]))
    return first if first == last else f"{first} … {last}"


def group_tables(group: GroupAdvice) -> list[Table]:
    """The fit per device, the one-time costs, and the break-even per size (each only when there is one)."""
    tables: list[Table] = []
    if group.fits:
        rows = []
        for device, fit in group.fits.items():
            within, judged = fit.agreement()
            step = (f"×{_parameter(fit, 'c', 1.0)} from {axis_name(group.key[0])}={fit.fit.step_at:g}"
                    if fit.fit.has_step else "–")
            rows.append([device, _parameter(fit, "a"), f"{fit.fit.b:.3g}", _parameter(fit, "p"), step,
                         f"{within} of {judged}" if judged else "no cell intervals",
                         f"{format_size(fit.sizes[0])}–{format_size(fit.sizes[-1])}"])
        tables.append((f"Fit {FIT_FORM} per device (seconds; [95 %] over rounds)",
                       ("device", "a (fixed cost)", "b", "p", "step (work ×)", "fit within the cell's 95 % CI",
                        "sizes"), rows))
    if group.one_time:
        rows = [[d, format_time(o.init_s) if o.init_source == "meta.json init" else o.init_source,
                 _seconds(o.first_call_s), _seconds(o.transfer_s), o.transfer_source]
                for d, o in group.one_time.items()]
        tables.append(("One-time costs (smallest … largest n)",
                       ("device", "init", "first call − warm call", "transfer", "transfer from"), rows))
    if group.break_even:
        rows = [[b.accelerator, str(b.size), format_time(b.baseline_s), format_time(b.accelerator_s),
                 format_time(b.extra_once_s), calls_text(b)] for b in group.break_even]
        tables.append((f"Break-even call count: from how many calls moving to the accelerator pays (baseline "
                       f"{group.baseline}; [95 %])",
                       ("accelerator", "n", f"{group.baseline} per call (fit)", "accelerator per call (fit)",
                        "one-time extra", "break-even calls"), rows))
    return tables


def range_rows(group: GroupAdvice) -> list[list[str]]:
    """One row per size range: sizes, the device to use over N calls."""
    return [[sizes(r), choice(r)] for r in group.ranges]


def agreement_sentence(advice: Advice) -> str:
    within, judged = advice.agreement()
    if not judged:
        return f"Fit quality: no cell has a 95 % interval to check the fit {FIT_FORM} against."
    stepped = sum(f.fit.has_step for g in advice.groups for f in g.fits.values())
    how = f" ({stepped} curve{'s' if stepped != 1 else ''} with a step)" if stepped else ""
    return (f"Fit quality: the fit {FIT_FORM}{how} lies within the cell's 95 % interval of its median at "
            f"{within} of {judged} cells ({within / judged:.0%}).")


def advice_json(advice: Advice) -> dict[str, Any]:
    """Everything the advice holds, as plain data (NaN and inf become null in ``formatting.json_text``)."""
    groups = []
    for g in advice.groups:
        fits = {}
        for device, f in g.fits.items():
            est, low, high = f.interval(f.sizes)
            fits[device] = {"a_s": f.fit.a, "b_s": f.fit.b, "p": f.fit.p, "rounds": list(f.round_ids),
                            "reason": f.reason,
                            "cells": [{"size": s, "median_s": m, "ci_low_s": lo, "ci_high_s": hi, "fit_s": e,
                                       "fit_low_s": fl, "fit_high_s": fh, "within": w}
                                      for s, m, lo, hi, e, fl, fh, w in zip(
                                          f.sizes, f.medians, f.ci_low, f.ci_high, est, low, high, f.within,
                                          strict=True)]}
        groups.append({
            "op": g.key[0], "dtype": g.key[1], "mode": g.key[2], "syncs": list(g.syncs), "baseline": g.baseline,
            "accelerators": list(g.accelerators), "roles": g.roles, "fits": fits,
            "one_time": {d: {"init_s": o.init_s, "init_source": o.init_source, "sizes": list(o.sizes),
                             "first_call_s": o.first_call_s.tolist(), "transfer_s": o.transfer_s.tolist(),
                             "transfer_source": o.transfer_source} for d, o in g.one_time.items()},
            "ranges": [{"low": r.low, "high": r.high, "device": r.device, "within_noise_of": list(r.also),
                        "judged": r.judged} for r in g.ranges],
            "break_even": [{"accelerator": b.accelerator, "size": b.size, "baseline_s": b.baseline_s,
                            "accelerator_s": b.accelerator_s, "extra_once_s": b.extra_once_s, "calls": b.calls,
                            "calls_low": b.calls_low, "calls_high": b.calls_high} for b in g.break_even],
            "summary": summary(g), "notes": g.notes,
        })
    within, judged = advice.agreement()
    return {"calls": advice.calls, "fit": FIT_FORM, "confidence": CONFIDENCE,
            "agreement": {"within": within, "judged": judged}, "groups": groups}


SUMMARY_HEADERS = ("op · dtype · mode", "device to use by size", "break-even calls (largest shared n)",
                   "fit within the cells' 95 % CI")


def summary_rows(advice: Advice) -> list[list[str]]:
    """One row per (op, dtype, mode): the device by size range over N calls, the break-even of each accelerator
    at the largest size both measured, and how many cells' intervals hold the fit: the reports' compact view."""
    rows = []
    for g in advice.groups:
        ranges = "; ".join(f"{sizes(r)}: {choice(r)}" for r in g.ranges) or ("no advice: " + "; ".join(g.notes))
        last = {b.accelerator: b for b in g.break_even}
        axis = axis_name(g.key[0])
        even = "; ".join(f"{a} vs {g.baseline} at {axis}={b.size}: {calls_text(b)}" for a, b in last.items()) or "–"
        within, judged = g.agreement()
        rows.append([" · ".join(g.key), ranges, even, f"{within} of {judged}" if judged else "–"])
    return rows


ADVICE_EXPLANATION = (
    f"Per op, the device to use at each size over {{calls:,}} calls, counting each device's initialisation, the "
    f"first call's extra cost and one transfer of the data, from a fit {FIT_FORM} per device (with one step "
    "where one law misses the cells; intervals: 95 %, from refitting each round); *within noise* where the "
    "round-paired difference's interval holds 0. The "
    "break-even is the number of calls from which moving to the accelerator pays. `devbench advise RUN "
    "[--calls N]` prints the fits, the one-time costs and the break-even at every size."
)
"""What the reports' advice section means, in words (``{calls}`` is filled in)."""
