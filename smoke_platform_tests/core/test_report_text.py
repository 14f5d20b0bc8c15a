"""Numbers in reports read as a person writes them (no `6e+04`, no raw dicts)."""

import math

import pandas as pd
import pytest

from smoke_platform.reports.markdown import counts_text, markdown_table, readable


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (60000, "60,000"),
        (60000.0, "60,000"),
        (18530.2, "18,530"),
        (936.25, "936.2"),
        (0.7062, "0.7062"),
        (0.009951, "0.009951"),
        (0.00001234, "1.23e-05"),
        (math.nan, "n/a"),
        (None, "n/a"),
        (True, "True"),
        ("sensor-001", "sensor-001"),
    ],
)
def test_readable(value, text):
    assert readable(value) == text


def test_markdown_table_right_aligns_numbers_and_spells_them_out():
    frame = pd.DataFrame(
        {"value": pd.Series({"rows": 60000, "fire_share": 0.7062}, dtype=object)}
    ).assign(note=["a", "b"])
    lines = markdown_table(frame).splitlines()
    assert lines[1] == "|:-----------|--------:|:-------|"
    assert "60,000" in lines[2] and "e+" not in "".join(lines)


def test_counts_text():
    assert counts_text({"warning": 2, "critical": 1}) == "2 warning, 1 critical"
    assert counts_text({}) == "none"
