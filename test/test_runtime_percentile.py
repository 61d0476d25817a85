"""One percentile definition for every tool: linear interpolation between ranks (numpy's default)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clustvit_ros.runtime.percentile import percentile


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), q=st.floats(0, 100))
def test_equals_numpys_default_method(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-9)


def test_p95_of_twenty_values_interpolates_between_ranks():
    assert percentile(range(1, 21), 95) == pytest.approx(19.05)  # nearest rank would say 20


def test_non_finite_values_are_left_out_and_nothing_is_nan():
    assert percentile([1.0, math.nan, 3.0, math.inf], 50) == 2.0
    assert math.isnan(percentile([], 50)) and math.isnan(percentile([math.nan], 95))
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile([1.0], 101)
