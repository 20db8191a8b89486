"""BENCHMARKS.md written again by `make bench`: a section's hand-written end survives its run."""

from __future__ import annotations

from bench.report import BY_HAND, TITLES, document


def section(key: str, text: str) -> str:
    return f"{TITLES[key]}\n\n{text}\n"


def test_a_new_run_keeps_what_was_written_by_hand_and_replaces_the_rest() -> None:
    previous = document(
        {
            "postgresql": section("postgresql", f"old table\n\n{BY_HAND}\n\nA profile by hand."),
            "mongodb": section("mongodb", "old mongodb table"),
        },
        None,
    )
    again = document({"postgresql": section("postgresql", "new table")}, previous)
    assert "new table" in again and "old table" not in again
    assert again.count("A profile by hand.") == 1
    assert again.index("new table") < again.index(BY_HAND) < again.index("A profile by hand.")
    assert "old mongodb table" in again  # a section not run is kept whole


def test_a_section_without_the_mark_is_replaced_whole() -> None:
    previous = document({"node": section("node", "old node rows\n\nold prose")}, None)
    again = document({"node": section("node", "new node rows")}, previous)
    assert "new node rows" in again
    assert "old" not in again.split(TITLES["node"], 1)[1]
