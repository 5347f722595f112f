"""The ICLR 2019 study, section 2: more training data, a more accurate but less robust model.

A least-squares line y = a x + b is fitted on S_1 (3 points) and on S_2 = S_1 plus 3 points,
and tested on T (2 points). Accuracy is the test mean squared error; robustness of a test pair
(x_t, y_t) is the smallest |delta| that moves the relative error |(M(x_t + delta) - y_t) / y_t|
from below theta = 0.025 to above it (paper: "enumerate delta from 0 by a step of 0.0001"),
averaged over T. For a line the answer also has a closed form,
|delta| = (theta |y_t| - |M(x_t) - y_t|) / |a|, which the enumeration must match.

Run: ``python examples/linear_regression.py`` (numpy only; ``--quick`` is accepted and changes
nothing, the computation takes milliseconds).
"""

from __future__ import annotations

import argparse

import numpy as np

S1 = np.array([(1.35, 9.52), (2.42, 16.7), (4.02, 28.03)])
S2 = np.vstack([S1, [(8.59, 60.22), (3.85, 25.74), (6.71, 47.2)]])
T = np.array([(4.78, 33.24), (9.71, 67.78)])
THETA = 0.025
STEP = 1e-4


def fit_line(points: np.ndarray) -> tuple[float, float]:
    """Closed-form least squares (normal equations) for y = a x + b."""
    x, y = points[:, 0], points[:, 1]
    design = np.column_stack([x, np.ones_like(x)])
    a, b = np.linalg.solve(design.T @ design, design.T @ y)
    return float(a), float(b)


def test_mse(a: float, b: float, test: np.ndarray) -> float:
    """Mean squared error of the line on the test pairs."""
    return float(np.mean((a * test[:, 0] + b - test[:, 1]) ** 2))


def relative_error(a: float, b: float, x: np.ndarray | float, y: float) -> np.ndarray:
    """|(M(x) - y) / y| for the line M(x) = a x + b."""
    return np.abs((a * np.asarray(x) + b - y) / y)


def robustness_enumerated(
    a: float, b: float, x: float, y: float, *, theta: float = THETA, step: float = STEP
) -> float:
    """Smallest |delta| on the grid {0, step, 2 step, ...} (both signs) with
    relative error above theta at x + delta, for a pair whose relative error is below theta.

    Returns NaN when the pair is already wrong (relative error >= theta at delta = 0).
    """
    if relative_error(a, b, x, y) >= theta:
        return float("nan")
    limit = 2.0 * theta * abs(y) / abs(a) + 1.0  # the crossing lies well inside this range
    deltas = np.arange(0, int(limit / step) + 1) * step
    crossed = (relative_error(a, b, x + deltas, y) > theta) | (
        relative_error(a, b, x - deltas, y) > theta
    )
    return float(deltas[int(np.argmax(crossed))])


def robustness_closed_form(
    a: float, b: float, x: float, y: float, *, theta: float = THETA
) -> float:
    """The exact smallest |delta|: the residual must grow from |r| to theta |y| at slope |a|."""
    residual = abs(a * x + b - y)
    return (theta * abs(y) - residual) / abs(a)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="accepted for CI (no effect)")
    parser.parse_args(argv)
    out: dict[str, dict[str, float]] = {}
    print(
        f"{'model':6s} {'a':>8s} {'b':>8s} {'test MSE':>9s} {'robustness':>11s} "
        f"{'(closed form)':>13s}"
    )
    for name, train in (("M_1", S1), ("M_2", S2)):
        a, b = fit_line(train)
        mse = test_mse(a, b, T)
        enum = [robustness_enumerated(a, b, x, y) for x, y in T]
        exact = [robustness_closed_form(a, b, x, y) for x, y in T]
        rob, rob_exact = float(np.mean(enum)), float(np.mean(exact))
        out[name] = {"a": a, "b": b, "mse": mse, "robustness": rob, "robustness_exact": rob_exact}
        print(f"{name:6s} {a:8.4f} {b:8.4f} {mse:9.4f} {rob:11.4f} {rob_exact:13.5f}")
    more_accurate = out["M_2"]["mse"] < out["M_1"]["mse"]
    less_robust = out["M_2"]["robustness"] < out["M_1"]["robustness"]
    print(f"\nM_2 (more data) is more accurate: {more_accurate}; less robust: {less_robust}")
    print(
        "The ICLR 2019 study reports test MSE 0.0450 (M_1) and 0.0396 (M_2), reproduced above. "
        "It reports "
        "robustness 0.2194 and 0.2125; the definition it states (smallest |delta| with the "
        "relative error crossing theta = 0.025, averaged over T) gives the values above. The "
        "printed figures are not reproducible from that definition, but the conclusion is: M_1 "
        "is more robust than M_2."
    )
    return out


if __name__ == "__main__":
    main()
