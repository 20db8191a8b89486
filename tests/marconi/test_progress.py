"""Progress for `--wait`: a bar redrawn on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from marconi.progress import CLEAR_LINE, Progress, bar, duration
from tests.conftest import FakeClock


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar() -> None:
    assert bar(0.0) == "[" + "-" * 24 + "]"
    assert bar(0.5) == "[" + "#" * 12 + "-" * 12 + "]"
    assert bar(1.0) == bar(7.0) == "[" + "#" * 24 + "]"
    assert bar(-1.0) == bar(0.0)
    assert bar(None) == "[" + "." * 24 + "]"


def test_duration() -> None:
    assert [duration(s) for s in (0, 5.9, 65, 3599, 3725, -3)] == [
        "0s",
        "5s",
        "1m05s",
        "59m59s",
        "1h02m",
        "0s",
    ]


def test_on_a_terminal_the_bar_is_redrawn_in_place() -> None:
    out = Terminal()
    progress = Progress(out)
    assert progress.tty
    progress.update(0.5, "COPYING, 10 copied", stage="COPYING")
    progress.update(0.5, "COPYING, 20 copied", stage="COPYING")
    progress.note("a note")
    progress.update(1.0, "DONE")
    progress.close()
    progress.close()  # once only
    assert out.getvalue() == (
        f"{CLEAR_LINE}{bar(0.5)} COPYING, 10 copied"
        f"{CLEAR_LINE}{bar(0.5)} COPYING, 20 copied"
        f"{CLEAR_LINE}a note\n"
        f"{CLEAR_LINE}{bar(1.0)} DONE\n"
    )


def test_elsewhere_a_line_per_stage_and_at_most_one_per_interval_within() -> None:
    out, clock = io.StringIO(), FakeClock(0.0)
    progress = Progress(out, every=10.0, clock=clock)
    assert not progress.tty
    progress.update(0.0, "INIT", stage="INIT")
    progress.update(0.2, "COPYING 1", stage="COPYING")
    clock.advance(5)
    progress.update(0.2, "COPYING 2", stage="COPYING")  # too soon
    clock.advance(6)
    progress.update(0.2, "COPYING 3", stage="COPYING")
    clock.advance(60)
    progress.update(0.2, "COPYING 3", stage="COPYING")  # nothing new
    progress.update(0.4, "CATCHING_UP", stage="CATCHING_UP")
    progress.note("a note")
    progress.close()
    assert out.getvalue().splitlines() == [
        "INIT",
        "COPYING 1",
        "COPYING 3",
        "CATCHING_UP",
        "a note",
    ]


def test_without_a_stream_nothing_is_shown() -> None:
    progress = Progress(None)
    progress.update(0.5, "x")
    progress.note("y")
    progress.close()
    assert not progress.tty
