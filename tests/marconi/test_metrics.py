"""Request metrics and tallies: plain numbers on the hot path, Prometheus families when scraped."""

from __future__ import annotations

from prometheus_client import generate_latest

from ground.metrics import Recorder, Tally


def scraped(prefix: str) -> list[str]:
    return [line for line in generate_latest().decode().splitlines() if line.startswith(prefix)]


def test_requests_are_counted_and_timed_in_cumulative_buckets() -> None:
    recorder = Recorder("test-recorder")
    for seconds in (0.0001, 0.0005, 0.003, 7.0):
        recorder.record("GET", "/r", 200, seconds)
    recorder.record("GET", "/r", 404, 0.001)
    labels = 'component="test-recorder",method="GET",route="/r"'
    assert scraped(f"marconi_http_requests_total{{{labels}") == [
        f'marconi_http_requests_total{{{labels},status="200"}} 4.0',
        f'marconi_http_requests_total{{{labels},status="404"}} 1.0',
    ]
    buckets = {
        line.split('le="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in scraped("marconi_http_request_seconds_bucket")
        if 'component="test-recorder"' in line
    }
    assert buckets["0.0005"] == 2 and buckets["0.001"] == 3 and buckets["0.005"] == 4
    assert buckets["5.0"] == 4 and buckets["+Inf"] == 5
    (total,) = scraped(f"marconi_http_request_seconds_sum{{{labels}}}")
    assert abs(float(total.rsplit(" ", 1)[1]) - 7.0046) < 1e-9


def test_a_tally_is_a_counter_family() -> None:
    tally = Tally("marconi_test_tally", "Things tallied.", ["kind"])
    tally.add(("a",))
    tally.add(("a",))
    tally.add(("b",))
    assert scraped("marconi_test_tally") == [
        'marconi_test_tally_total{kind="a"} 2.0',
        'marconi_test_tally_total{kind="b"} 1.0',
    ]
