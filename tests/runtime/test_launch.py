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
