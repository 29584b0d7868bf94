"""The curve devbench advise fits per device: ``t(n) = a + b·n^p``, and the same with one step, and their
least-squares fits. Pure numerics (numpy, scipy), no I/O.

``a`` is the fixed cost of a call (dispatch, launch) and ``b·n^p`` the work. Sizes span decades, so the fit
is least squares on the log of the time (relative errors: a 64² cell weighs as much as a 4096² one); for each
exponent ``p`` the best ``a, b >= 0`` solve a two-column linear problem, the profile over ``p`` picks the
start and a bounded least-squares step polishes all parameters.

One power law cannot follow a real curve's steps: a memory-bound op slows when its working set leaves the
last-level cache, a library switches kernels at some size. On nine sweeps of this project's 2-core VM (210
cells) a single law lay within the cells' 95 % intervals at 82 % of them, so the fit may take one step, the
work times ``1 + c`` from a measured size on (:func:`choose_step`), kept only where the Bayesian information
criterion prefers it: 86 % then, 90 % on the grids of 7-8 sizes where a step can be tried (README "Which
device should I use?").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from devbench.formatting import format_time

FloatArray = npt.NDArray[np.float64]

MIN_SIZES = 3
"""A device needs this many ok sizes for a fit of three parameters."""
MIN_SIZES_FOR_STEP = 6
"""A step (four parameters and a break) is tried only on curves of this many sizes: two degrees of freedom
left at least."""
P_BOUNDS = (0.05, 6.0)
"""The exponent p is sought in this range (matmul's work is n³; 6 leaves room for cache steps)."""
C_BOUNDS = (-0.9, 10.0)
"""A step multiplies the work by 1 + c: from a tenth to eleven times."""
_P_GRID = np.linspace(P_BOUNDS[0], P_BOUNDS[1], 120)


@dataclass(frozen=True)
class PowerLaw:
    """``t(n) = a + b·n^p`` seconds per call (``a`` the fixed cost, ``b·n^p`` the work), the work times
    ``1 + c`` from size ``step_at`` on when the fit has a step (``step_at`` inf: none)."""

    a: float
    b: float
    p: float
    c: float = 0.0
    step_at: float = math.inf

    def at(self, n: npt.ArrayLike) -> FloatArray:
        n = np.atleast_1d(np.asarray(n, dtype=np.float64))
        return np.asarray(self.a + self.b * np.power(n, self.p) * (1.0 + self.c * (n >= self.step_at)),
                          dtype=np.float64)

    @property
    def has_step(self) -> bool:
        return math.isfinite(self.step_at)

    def describe(self) -> str:
        step = f", ×{1 + self.c:.2f} from n={self.step_at:g}" if self.has_step else ""
        return f"a = {format_time(self.a)}, b = {self.b:.3g} s, p = {self.p:.2f}{step}"


def _profiles(x: FloatArray, m: FloatArray, y: FloatArray, ps: FloatArray) -> tuple[FloatArray, ...]:
    """(A, B, log SSE) per exponent in ``ps``: for each p the A, B >= 0 minimising the relative error of
    A + B·x^p against ``m`` (a linear problem in two unknowns), scored by the squared log error the fit
    minimises. Vectorised over ``ps`` (rows)."""
    xp = np.power(x[None, :], ps[:, None])
    u, v = 1.0 / m, xp / m[None, :]
    suu, su = float(u @ u), float(u.sum())
    suv, svv, sv = v @ u, np.einsum("ij,ij->i", v, v), v.sum(axis=1)
    det = suu * svv - suv * suv
    with np.errstate(divide="ignore", invalid="ignore"):
        a_ = np.where(det > 0, (svv * su - suv * sv) / det, -1.0)
        b_ = np.where(det > 0, (suu * sv - suv * su) / det, -1.0)
    # Where the best point is infeasible, the best feasible one is on an edge: a = 0 or b = 0.
    edge_b = np.column_stack([np.zeros_like(sv), sv / svv])
    edge_a = np.column_stack([np.full_like(sv, su / suu), np.zeros_like(sv)])
    inside = (a_ >= 0) & (b_ >= 0)
    candidates = [np.column_stack([a_, b_]), edge_b, edge_a]
    sse = []
    for c in candidates:
        with np.errstate(divide="ignore", invalid="ignore"):
            fitted = c[:, :1] + c[:, 1:] * xp
            sse.append(np.where(np.all(fitted > 0, axis=1), np.sum((np.log(fitted) - y[None, :]) ** 2, axis=1),
                                np.inf))
    sse[0] = np.where(inside, sse[0], np.inf)
    pick = np.argmin(np.array(sse), axis=0)
    rows = np.arange(ps.size)
    chosen = np.array(candidates)[pick, rows]
    return chosen[:, 0], chosen[:, 1], np.array(sse)[pick, rows]


def _checked(sizes: npt.ArrayLike, seconds: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    n = np.asarray(sizes, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    if np.unique(n).size < MIN_SIZES or not (np.all(t > 0) and np.all(np.isfinite(t)) and np.all(n > 0)):
        raise ValueError(f"need {MIN_SIZES} distinct positive sizes with positive finite times")
    return n, t


def _step_profile(x: FloatArray, m: FloatArray, y: FloatArray, step: FloatArray
                  ) -> tuple[float, float, float, float, float]:
    """(A, B, log SSE, p, c): the start of a fit with a step. For a fixed p the model A + B·x^p·(1 + c·step)
    is linear in (A, B, B·(1 + c)), so each p on the grid is a three-column non-negative least-squares
    problem on relative errors (a start from the fit without a step lands in a local minimum that trades p
    against c)."""
    from scipy.optimize import nnls

    best = (math.inf, 0.0, 1.0, float(_P_GRID[0]), 0.0)
    for p in _P_GRID:
        xp = np.power(x, p)
        (a_, b_below, b_above), _ = nnls(np.column_stack([np.ones_like(x), xp * (1 - step), xp * step]) / m[:, None],
                                         np.ones_like(x))
        if b_below <= 0:
            continue
        c = float(np.clip(b_above / b_below - 1.0, *C_BOUNDS))
        fitted = a_ + b_below * xp * (1.0 + c * step)
        if np.all(fitted > 0):
            sse = float(np.sum((np.log(fitted) - y) ** 2))
            if sse < best[0]:
                best = (sse, float(a_), float(b_below), float(p), c)
    sse, a_, b_, p, c = best
    return a_, b_, sse, p, c


def fit_power_law(sizes: npt.ArrayLike, seconds: npt.ArrayLike, *, step_at: float | None = None) -> PowerLaw:
    """Least-squares fit of ``a + b·n^p`` to ``seconds`` on the log scale (relative errors), a, b >= 0,
    p in :data:`P_BOUNDS`; with ``step_at``, the work term times ``1 + c`` from that size on (c in
    :data:`C_BOUNDS`). ValueError for fewer than :data:`MIN_SIZES` distinct sizes or a non-positive time."""
    from scipy.optimize import least_squares  # lazy: scipy costs ~0.3 s to import

    n, t = _checked(sizes, seconds)
    # Scaled so that every parameter is of order 1 for the optimiser.
    n_ref, t_ref = float(np.exp(np.log(n).mean())), float(np.exp(np.log(t).mean()))
    x, m = n / n_ref, t / t_ref
    y = np.log(m)
    step = (n >= step_at).astype(np.float64) if step_at is not None else np.zeros_like(n)
    if step_at is None:
        a_all, b_all, sse_all = _profiles(x, m, y, _P_GRID)
        best = int(np.argmin(sse_all))
        a0, b0, sse0, p0, c0 = (float(a_all[best]), float(b_all[best]), float(sse_all[best]), float(_P_GRID[best]),
                                0.0)
    else:
        a0, b0, sse0, p0, c0 = _step_profile(x, m, y, step)

    def residuals(q: FloatArray) -> FloatArray:
        return np.asarray(np.log(q[0] + q[1] * np.power(x, q[2]) * (1.0 + q[3] * step)) - y, dtype=np.float64)

    lower = np.array([0.0, 0.0, P_BOUNDS[0], C_BOUNDS[0] if step_at is not None else -1e-12])
    upper = np.array([np.inf, np.inf, P_BOUNDS[1], C_BOUNDS[1] if step_at is not None else 1e-12])
    q0 = np.clip(np.array([max(a0, 1e-9), max(b0, 1e-9), p0, c0]), lower + 1e-12, upper - 1e-12)
    polished = least_squares(residuals, q0, bounds=(lower, upper), method="trf")
    if 2 * polished.cost < sse0:
        a_, b_, p, c = (float(v) for v in polished.x)
    else:
        a_, b_, p, c = a0, b0, p0, c0
    return PowerLaw(a=a_ * t_ref, b=b_ * t_ref / n_ref**p, p=p, c=c if step_at is not None else 0.0,
                    step_at=float(step_at) if step_at is not None else math.inf)


def _bic(fit: PowerLaw, n: FloatArray, t: FloatArray, parameters: int) -> float:
    sse = max(float(np.sum((np.log(fit.at(n)) - np.log(t)) ** 2)), 1e-12 * n.size)
    return n.size * math.log(sse / n.size) + parameters * math.log(n.size)


def choose_step(sizes: npt.ArrayLike, seconds: npt.ArrayLike) -> float | None:
    """The size from which a step in the work term (a cache boundary, a kernel switch) fits ``seconds``
    better than one power law, or None. A step is tried at every measured size with at least two sizes on
    each side, and kept only when the Bayesian information criterion prefers it (four parameters and the
    break against three), so noise alone rarely buys one; curves of fewer than :data:`MIN_SIZES_FOR_STEP`
    sizes get none."""
    n, t = _checked(sizes, seconds)
    order = np.argsort(n)
    n, t = n[order], t[order]
    if n.size < MIN_SIZES_FOR_STEP:
        return None
    best, best_bic = None, _bic(fit_power_law(n, t), n, t, 3)
    for k in range(2, n.size - 1):
        bic = _bic(fit_power_law(n, t, step_at=float(n[k])), n, t, 5)
        if bic < best_bic:
            best, best_bic = float(n[k]), bic
    return best
