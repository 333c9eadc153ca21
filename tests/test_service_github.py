"""The content-creating budget: at most N writes in any 60 s window (GitHub allows 80 a minute)."""

from __future__ import annotations

from service import github


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_writes_wait_for_the_window_once_the_budget_is_spent(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(github.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(github.time, "sleep", clock.sleep)
    budget = github.WriteBudget(per_minute=3)
    for _ in range(3):
        budget.take()
        clock.now += 1
    assert clock.slept == []
    budget.take()  # the 4th write in the same minute waits until the 1st is 60 s old
    assert clock.slept == [57.0] and clock.now == 1060.0
