from __future__ import annotations

import io
import json

from marconi.output import cell, emit_json, fields, table


def test_cells() -> None:
    assert cell(None) == "-"
    assert cell(True) == "yes" and cell(False) == "no"
    assert cell(["http://a:1", "http://b:2"]) == "http://a:1,http://b:2"
    assert cell([]) == "-"
    assert cell(3) == "3"


def test_table_pads_every_column_but_the_last() -> None:
    text = table(["NAME", "NODES"], [["p1", ["http://a:1"]], ["partition-2", None]])
    assert text.splitlines() == [
        "NAME         NODES",
        "p1           http://a:1",
        "partition-2  -",
    ]


def test_table_with_no_rows_is_its_header() -> None:
    assert table(["A", "B"], []) == "A  B"


def test_fields_align_keys() -> None:
    assert fields([("queue", "orders"), ("placed", True)]) == "queue   orders\nplaced  yes"


def test_json_is_sorted_and_parses_back() -> None:
    out = io.StringIO()
    emit_json({"b": 1, "a": [True, None]}, out)
    assert out.getvalue().index('"a"') < out.getvalue().index('"b"')
    assert json.loads(out.getvalue()) == {"a": [True, None], "b": 1}
