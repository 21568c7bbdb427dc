"""Launcher helpers that need no processes."""

from __future__ import annotations


def test_placement_device_ids_give_local_gpu_indices():
    from runtime.launch import gpu_index

    assert gpu_index("node0/gpu3") == 3
    assert gpu_index("node1/gpu12") == 12
    assert gpu_index("node0/cpu0") is None and gpu_index("gpu") is None
