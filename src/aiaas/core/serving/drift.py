"""Prediction drift: how far a deployed model's recent inputs have moved from its training data.

A model is only as good as the resemblance between what it is asked and what it learned from, and
nothing fails loudly when that resemblance fades. So each feature's training distribution is
summarised once per model version (a *baseline*), and a scheduled job compares the inputs sampled
at serving time with it through the Population Stability Index over the baseline's bins:

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

Read conventionally: below 0.1 stable, 0.1 to 0.25 moderate drift, above 0.25 significant drift.

- Numeric features get quantile bins, so that each holds a similar share of the training data and
  PSI weighs the whole distribution, not its range. A feature with at most `bins` distinct values
  gets one bin per value instead, because quantiles would merge a rare value with a common one.
  The outer bins are open-ended: serving values outside the training range still count.
- Text features get their most frequent categories plus one "other" bucket, which also takes every
  category never seen in training.
- Nulls and NaN are left out on both sides: PSI compares the distribution of present values.

Baselines are stored as JSON and read back as untrusted input: `baselines_from_json` refuses
anything malformed with a `ValueError` naming the offending field. This module does no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from aiaas.core.signatures import TensorSpec

BASELINE_FORMAT_VERSION = 1
PROPORTION_FLOOR = 1e-4
"""Proportions below this are read as this in PSI, so that an empty bin on either side costs a
large but finite amount instead of ln(0). One in ten thousand is below what a few thousand samples
can resolve, so it only ever stands in for "empty"."""
PROPORTION_SUM_TOLERANCE = 1e-6

_LARGEST_FLOAT = float(np.finfo(np.float64).max)

SampleValues: TypeAlias = "npt.NDArray[Any] | Sequence[Any]"


def _check_proportions(proportions: tuple[float, ...], expected_count: int, rows: int) -> None:
    if rows < 0:
        raise ValueError(f"rows must not be negative, got {rows}")
    if len(proportions) != expected_count:
        raise ValueError(f"expected {expected_count} proportions, got {len(proportions)}")
    if not all(math.isfinite(share) and 0.0 <= share <= 1.0 for share in proportions):
        raise ValueError("proportions must be finite numbers between 0 and 1")
    total = math.fsum(proportions)
    if abs(total - 1.0) > PROPORTION_SUM_TOLERANCE:
        raise ValueError(f"proportions sum to {total}, not 1")


@dataclass(frozen=True)
class NumericBaseline:
    """Training distribution of a numeric feature over bins cut at `edges`.

    `edges` are the interior cut points, finite and strictly increasing. Bins are closed on the
    right, as a quantile is the smallest value with at least that share at or below it: bin 0 is
    (-inf, edges[0]], bin i is (edges[i-1], edges[i]], and the last is (edges[-1], inf). So there
    is one proportion more than there are edges.
    """

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    rows: int
    """Training values counted, nulls and NaN excluded. 0 means there is nothing to compare with."""

    def __post_init__(self) -> None:
        if not all(math.isfinite(edge) for edge in self.edges):
            raise ValueError("edges must be finite numbers")
        if any(upper <= lower for lower, upper in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly increasing")
        _check_proportions(self.proportions, len(self.edges) + 1, self.rows)


@dataclass(frozen=True)
class CategoricalBaseline:
    """Training distribution of a text feature: one proportion per category, then "other"."""

    categories: tuple[str, ...]
    proportions: tuple[float, ...]
    rows: int
    """Training values counted, nulls excluded. 0 means there is nothing to compare with."""

    def __post_init__(self) -> None:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories must be unique")
        _check_proportions(self.proportions, len(self.categories) + 1, self.rows)


FeatureBaseline: TypeAlias = NumericBaseline | CategoricalBaseline


@dataclass(frozen=True)
class FeatureDrift:
    psi: float | None
    """None when there is nothing to compare: no samples, or no training values."""
    sample_count: int
    """Samples counted, nulls and NaN excluded. PSI on a few dozen samples is mostly noise."""


def training_baselines(
    table: pa.Table, features: Sequence[TensorSpec], *, bins: int = 10, max_categories: int = 20
) -> dict[str, FeatureBaseline]:
    """Baselines of `features` from their training columns; a feature whose dtype is neither
    numeric (bool, int*, uint*, float*) nor "str" is refused with a `ValueError`."""
    if bins < 2 or max_categories < 1:
        raise ValueError("drift baselines need bins >= 2 and max_categories >= 1")
    baselines: dict[str, FeatureBaseline] = {}
    for spec in features:
        if spec.name not in table.column_names:
            raise ValueError(f"training table has no column for feature {spec.name!r}")
        column = table.column(spec.name)
        try:
            if spec.dtype == "str":
                baselines[spec.name] = _categorical_baseline(column, max_categories)
            elif spec.dtype == "bool" or spec.dtype.startswith(("int", "uint", "float")):
                baselines[spec.name] = _numeric_baseline(_as_served(column, spec.dtype), bins)
            else:
                raise ValueError(f"dtype {spec.dtype!r} cannot be binned for drift monitoring")
        except pa.ArrowException as error:
            raise ValueError(f"feature {spec.name!r} of type {column.type}: {error}") from None
    return baselines


def _as_served(column: pa.ChunkedArray, dtype: str) -> pa.ChunkedArray:
    """The training values as serving sees them: a float input is cast to its signature's
    dtype before the model and the sampler get it. Binned at float64 instead, a training value
    on a bin edge and the same value sampled as float32 can fall in neighbouring bins, and the
    training data itself, served, would show drift."""
    if dtype in {"float16", "float32"}:
        return pc.cast(column, pa.from_numpy_dtype(np.dtype(dtype)), safe=False)
    return column


def _numeric_baseline(column: pa.ChunkedArray, bins: int) -> NumericBaseline:
    # Unsafe cast: an int64 beyond 2**53 losing its last digits does not matter for binning.
    values = pc.cast(pc.drop_null(column), pa.float64(), safe=False).to_numpy()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return NumericBaseline(edges=(), proportions=(1.0,), rows=0)
    # Infinities are counted (in the outer bins) but cannot be cut points: JSON has no infinity.
    edges = _numeric_edges(values[np.isfinite(values)], bins)
    shares = _numeric_bin_counts(edges, values) / values.size
    return NumericBaseline(
        edges=tuple(float(edge) for edge in edges),
        proportions=tuple(float(share) for share in shares),
        rows=int(values.size),
    )


def _numeric_edges(finite: npt.NDArray[np.float64], bins: int) -> npt.NDArray[np.float64]:
    if finite.size == 0:
        return np.empty(0)
    # Quantiles at 0, 1/bins, ..., 1 are actual values: if they all differ, there are more than
    # `bins` distinct values, which spares continuous columns the costly distinct count.
    quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1), method="inverted_cdf")
    if np.unique(quantiles).size <= bins:
        # np.unique after the hash, so that -0.0 and 0.0 are one value.
        distinct = np.unique(pc.unique(pa.array(finite)).to_numpy())
        if distinct.size <= bins:
            # One bin per value, plus one below the smallest (the last bin already holds what is
            # above the largest), so that even a constant column sees a shift either way.
            if distinct[0] == -_LARGEST_FLOAT:
                return distinct
            return np.append(np.nextafter(distinct[0], -np.inf), distinct)
    return np.unique(quantiles[1:-1])


def _categorical_baseline(column: pa.ChunkedArray, max_categories: int) -> CategoricalBaseline:
    strings = pc.cast(pc.drop_null(column), pa.string())
    rows = len(strings)
    if rows == 0:
        return CategoricalBaseline(categories=(), proportions=(1.0,), rows=0)
    frequencies = pc.value_counts(strings)
    # Ties are broken by name so that the same data always gives the same baseline.
    ranked = pa.table(
        {"category": frequencies.field("values"), "count": frequencies.field("counts")}
    ).sort_by([("count", "descending"), ("category", "ascending")])
    top = ranked.slice(0, max_categories)
    top_counts = top.column("count").to_numpy()
    shares = [*(top_counts / rows), (rows - int(top_counts.sum())) / rows]
    return CategoricalBaseline(
        categories=tuple(top.column("category").to_pylist()),
        proportions=tuple(float(share) for share in shares),
        rows=rows,
    )


def psi(baseline: FeatureBaseline, values: SampleValues) -> float:
    """PSI of `values` against `baseline`; nulls and NaN are skipped. Raises `ValueError` when
    either side has no values, since a distribution of nothing cannot drift."""
    counts = _bin_counts(baseline, values)
    if baseline.rows == 0 or counts.sum() == 0:
        raise ValueError("PSI needs at least one training value and one sample")
    return _psi_from_counts(baseline.proportions, counts)


def feature_drift(
    baselines: Mapping[str, FeatureBaseline], samples: Mapping[str, SampleValues]
) -> dict[str, FeatureDrift]:
    """Drift of every baselined feature. A feature with no samples, or with no training values, is
    reported with `psi=None` rather than left out, so that a gap in sampling stays visible.
    Samples of features without a baseline are ignored."""
    report: dict[str, FeatureDrift] = {}
    for name, baseline in baselines.items():
        counts = _bin_counts(baseline, samples.get(name, ()))
        sample_count = int(counts.sum())
        measurable = sample_count > 0 and baseline.rows > 0
        drift = _psi_from_counts(baseline.proportions, counts) if measurable else None
        report[name] = FeatureDrift(psi=drift, sample_count=sample_count)
    return report


def _psi_from_counts(expected_proportions: tuple[float, ...], counts: npt.NDArray[Any]) -> float:
    expected = np.maximum(np.asarray(expected_proportions, dtype=np.float64), PROPORTION_FLOOR)
    actual = np.maximum(counts / counts.sum(), PROPORTION_FLOOR)
    # Each term is >= 0 (both factors share a sign), so PSI is too, floor or no floor.
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _bin_counts(baseline: FeatureBaseline, values: SampleValues) -> npt.NDArray[np.intp]:
    if isinstance(baseline, NumericBaseline):
        numbers = _as_floats(values)
        return _numeric_bin_counts(np.asarray(baseline.edges), numbers[~np.isnan(numbers)])
    position = {category: index for index, category in enumerate(baseline.categories)}
    other = len(baseline.categories)
    indices = [position.get(str(value), other) for value in values if not _is_missing(value)]
    return np.bincount(np.asarray(indices, dtype=np.intp), minlength=other + 1)


def _numeric_bin_counts(
    edges: npt.NDArray[np.float64], values: npt.NDArray[np.float64]
) -> npt.NDArray[np.intp]:
    bin_indices = np.searchsorted(edges, values, side="left")
    return np.bincount(bin_indices, minlength=edges.size + 1)


def _as_floats(values: SampleValues) -> npt.NDArray[np.float64]:
    try:
        array = np.asarray(values)
        if array.dtype.kind in "biuf":
            return array.astype(np.float64).ravel()
        if array.dtype == object:  # a sequence holding None, or values of mixed types
            return np.array([math.nan if item is None else float(item) for item in array.ravel()])
    except (TypeError, ValueError):  # ragged lists, or a list or text where a number belongs
        pass
    raise ValueError("samples of a numeric feature must be numbers or nulls")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def baselines_to_json(baselines: Mapping[str, FeatureBaseline]) -> dict[str, Any]:
    """A plain-JSON document that `baselines_from_json` reads back to equal baselines."""
    features: dict[str, Any] = {}
    for name, baseline in baselines.items():
        if isinstance(baseline, NumericBaseline):
            features[name] = {"kind": "numeric", "edges": list(baseline.edges)}
        else:
            features[name] = {"kind": "categorical", "categories": list(baseline.categories)}
        features[name] |= {"proportions": list(baseline.proportions), "rows": baseline.rows}
    return {"version": BASELINE_FORMAT_VERSION, "features": features}


def baselines_from_json(data: Any) -> dict[str, FeatureBaseline]:
    """Baselines from a document made by `baselines_to_json`; anything else is a `ValueError`."""
    document = _json_object(data, "drift baselines", {"version", "features"})
    version = document["version"]
    if type(version) is not int or version != BASELINE_FORMAT_VERSION:
        raise ValueError(f"drift baselines: unsupported format version {version!r}")
    features = _json_object(document["features"], "drift baselines: features", None)
    baselines: dict[str, FeatureBaseline] = {}
    for name, entry in features.items():
        where = f"drift baseline of feature {name!r}"
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind not in ("numeric", "categorical"):
            raise ValueError(f"{where}: expected an object whose kind is numeric or categorical")
        labels = "edges" if kind == "numeric" else "categories"
        fields = _json_object(entry, where, {"kind", labels, "proportions", "rows"})
        proportions = _json_numbers(fields["proportions"], f"{where}: proportions")
        rows = fields["rows"]
        if type(rows) is not int:
            raise ValueError(f"{where}: rows must be an integer")
        try:
            if kind == "numeric":
                edges = _json_numbers(fields["edges"], f"{where}: edges")
                baselines[name] = NumericBaseline(edges, proportions, rows)
            else:
                categories = fields["categories"]
                if not isinstance(categories, list) or not all(
                    isinstance(category, str) for category in categories
                ):
                    raise ValueError("categories must be a list of strings")
                baselines[name] = CategoricalBaseline(tuple(categories), proportions, rows)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    return baselines


def _json_object(value: Any, where: str, keys: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"{where}: expected a JSON object, got {type(value).__name__}")
    if keys is not None and set(value) != keys:
        raise ValueError(f"{where}: expected the fields {sorted(keys)}, got {sorted(value)}")
    return value


def _json_numbers(value: Any, where: str) -> tuple[float, ...]:
    # bool is an int in Python, but true in place of a number is corruption, not a number.
    if not isinstance(value, list) or not all(
        isinstance(item, int | float) and not isinstance(item, bool) for item in value
    ):
        raise ValueError(f"{where}: expected a list of numbers")
    try:
        return tuple(float(item) for item in value)
    except OverflowError:  # an integer literal too large for a float
        raise ValueError(f"{where}: number out of range") from None
