"""The overview's ordering: problems first (pure)."""

from __future__ import annotations

from control_plane.api.ui.rows import problem_rank


def test_problems_sort_first_disabled_last() -> None:
    ranks = {
        "nacked": problem_rank("nacked", "closed", "healthy", 0),
        "open": problem_rank("acked", "open", "healthy", 0),
        "unhealthy": problem_rank("acked", "closed", "unhealthy", 0),
        "half_open": problem_rank("acked", "half_open", "healthy", 0),
        "pending": problem_rank("pending", "closed", "unknown", None),
        "limiting": problem_rank("acked", "closed", "healthy", 3),
        "fine": problem_rank("acked", "closed", "healthy", 0),
        "disabled": problem_rank("disabled", "disabled", "unknown", None),
    }
    order = sorted(ranks, key=lambda k: ranks[k])
    assert order[:3] == ["nacked", "open", "unhealthy"]
    assert order[-2:] == ["fine", "disabled"]
    assert ranks["half_open"] == ranks["pending"] < ranks["limiting"] < ranks["fine"]
