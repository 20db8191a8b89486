from __future__ import annotations

import argparse

import pytest

from marconi.arguments import node_url, partition_name, positive, seconds, weight


def test_good_values_pass() -> None:
    assert partition_name("p-1_a.b") == "p-1_a.b"
    assert node_url("http://10.0.0.5:8889/") == "http://10.0.0.5:8889"
    assert node_url("https://node.example") == "https://node.example"
    assert weight("0") == 0 and positive("3") == 3 and seconds("0.5") == 0.5


@pytest.mark.parametrize(
    ("check", "raw"),
    [
        (partition_name, ""),
        (partition_name, "a/b"),
        (partition_name, "x" * 65),
        (node_url, "10.0.0.5:8889"),
        (node_url, "ftp://h"),
        (node_url, "http://"),
        (weight, "-1"),
        (weight, "1.5"),
        (positive, "0"),
        (seconds, "0"),
        (seconds, "soon"),
    ],
)
def test_bad_values_are_usage_errors(check: object, raw: str) -> None:
    assert callable(check)
    with pytest.raises(argparse.ArgumentTypeError):
        check(raw)
