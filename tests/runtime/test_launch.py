"""Launcher helpers that need no processes."""

from __future__ import annotations


def test_placement_device_ids_give_local_gpu_indices():
    from runtime.launch import gpu_index

    assert gpu_index("node0/gpu3") == 3
    assert gpu_index("node1/gpu12") == 12
    assert gpu_index("node0/cpu0") is None and gpu_index("gpu") is None


def test_the_root_cause_is_blamed_not_the_ranks_that_saw_it():
    from runtime.launch import _exit_reason, _failure

    failures = {0: ("peer", "rank 0: receive from rank 2 failed: connection reset"),
                2: ("died", _exit_reason(-9)), 3: ("peer", "rank 3: barrier failed")}
    text = _failure(failures).one_line()
    assert text.startswith("rank 2 was killed by signal SIGKILL (then ranks 0, 3 stopped)")
    own = _failure({1: ("error", "ValueError: bad"), 0: ("peer", "rank 0: receive from rank 1 failed")})
    assert own.one_line().startswith("rank 1 failed: ValueError: bad") and own.exit_code == 1
    assert _exit_reason(3) == "exited with code 3"


def test_a_fresh_one_rank_launch_runs_in_a_new_process_and_a_plain_one_in_this(monkeypatch):
    """What the profiler's runtime launches rely on (``fresh_process``): the one rank is a child
    process, not the caller warmed by earlier runs; without it a one-rank job stays in process."""
    import runtime.launch as launch

    calls: list[str] = []
    monkeypatch.setattr(launch, "_run_in_process", lambda job: calls.append("in process") or {})
    monkeypatch.setattr(launch, "_launch_local", lambda job, n: calls.append(f"{n} rank process") or [{}])
    monkeypatch.delenv("RANK", raising=False)
    launch.launch(object(), 1)
    launch.launch(object(), 1, fresh_process=True)
    assert calls == ["in process", "1 rank process"]
