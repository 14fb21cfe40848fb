# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Small statistics helpers shared by the probes (no numpy on targets)."""

from __future__ import annotations

import math


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method) of an already sorted list."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return sorted_values[0]
    position = (len(sorted_values) - 1) * fraction
    lower = math.floor(position)
    upper = math.ceil(position)
    weight = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * weight


def summarize(values: list[float], digits: int = 3) -> dict:
    """min / p50 / p95 / p99 / max / mean of the values, rounded; None figures when empty."""
    ordered = sorted(values)
    figures = {
        "samples": len(ordered),
        "min": ordered[0] if ordered else None,
        "p50": percentile(ordered, 0.50),
        "p95": percentile(ordered, 0.95),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else None,
        "mean": sum(ordered) / len(ordered) if ordered else None,
    }
    return {key: round(value, digits) if isinstance(value, float) else value for key, value in figures.items()}
