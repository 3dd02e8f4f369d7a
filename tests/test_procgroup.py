"""Ending a process group: a barrier before destroy on a clean exit, none on an error path."""

from __future__ import annotations

import pytest

from golfmodel import procgroup


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(procgroup.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(procgroup.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(procgroup.dist, "barrier", lambda: seen.append("barrier"))
    monkeypatch.setattr(procgroup.dist, "destroy_process_group", lambda: seen.append("destroy"))
    return seen


def test_a_clean_exit_meets_the_peers_before_destroying(calls: list[str]) -> None:
    procgroup.end_process_group(clean=True)
    assert calls == ["barrier", "destroy"]


def test_an_error_path_destroys_without_waiting_for_peers(calls: list[str]) -> None:
    procgroup.end_process_group(clean=False)
    assert calls == ["destroy"]


def test_a_failed_barrier_still_destroys_the_group(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    def broken() -> None:
        raise RuntimeError("peer gone")

    monkeypatch.setattr(procgroup.dist, "barrier", broken)
    with pytest.raises(RuntimeError, match="peer gone"):
        procgroup.end_process_group(clean=True)
    assert calls == ["destroy"]


def test_nothing_happens_without_a_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procgroup.dist, "is_initialized", lambda: False)
    procgroup.end_process_group(clean=True)  # no dist call would succeed here
