"""Process groups come from one DeviceMesh in the plan's rank order, the one simulator/rank_groups computes."""

from __future__ import annotations

import multiprocessing as mp
import queue
import traceback

import pytest
import torch

from runtime.dist_context import DistContext
from runtime.launch import _init_group, free_port
from simulator.rank_groups import AXES, coords, group_of, world_size

LAYOUTS = [
    {"pipefusion": 2},
    {"ulysses": 2},
    {"cfg": 2, "ulysses": 2},
    {"data": 2, "pipefusion": 2},
    {"cfg": 2, "pipefusion": 2},
    {"pipefusion": 4},
    {"data": 2, "cfg": 2},
    {"ring": 2, "tensor": 2},
    {"distrifusion": 2, "ulysses": 2},
]


def _rank(degrees: dict[str, int], rank: int, init_method: str, out: mp.Queue) -> None:
    import torch.distributed as dist

    try:
        n = world_size(degrees)
        _init_group(rank, n, "gloo", 20.0, init_method)
        ctx = DistContext(rank=rank, world_size=n, degrees=degrees, timeout_s=20.0)
        ctx.make_groups()
        report = {"coordinate": ctx.mesh.get_coordinate(), "dims": ctx.mesh.mesh_dim_names,
                  "groups": {axis: dist.get_process_group_ranks(ctx.group(axis)) for axis in AXES}}
        if ctx.forward_group is not None:
            report["forward"] = dist.get_process_group_ranks(ctx.forward_group)
            report["return"] = dist.get_process_group_ranks(ctx.return_group)
            report["distinct"] = ctx.forward_group.group_name != ctx.return_group.group_name
            # one message each way around every pipeline, on its own direction's group
            pipe, stage = ctx.pipeline(), ctx.coord["pipefusion"]
            nxt, prv = pipe[(stage + 1) % len(pipe)], pipe[stage - 1]
            ctx.isend(torch.tensor([rank]), nxt, ctx.forward_group)
            ctx.isend(torch.tensor([-rank]), prv, ctx.return_group)
            got_fwd = ctx.irecv((1,), torch.int64, prv, ctx.forward_group).wait()
            got_ret = ctx.irecv((1,), torch.int64, nxt, ctx.return_group).wait()
            ctx.flush()
            report["received"] = (int(got_fwd), int(got_ret))
        if "cfg" in degrees:
            report["cfg"] = ctx.exchange_cfg(torch.tensor([[float(rank)]])).flatten().tolist()
        ctx.barrier()
        dist.destroy_process_group()
        out.put((rank, report))
    except BaseException:  # noqa: BLE001 - the test reports it
        out.put((rank, traceback.format_exc()))


def run_ranks(degrees: dict[str, int]) -> dict[int, dict]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    init = f"tcp://127.0.0.1:{free_port()}"
    procs = [ctx.Process(target=_rank, args=(degrees, r, init, out), daemon=True) for r in range(world_size(degrees))]
    for proc in procs:
        proc.start()
    reports = {}
    try:
        while len(reports) < len(procs):
            rank, report = out.get(timeout=60)
            assert isinstance(report, dict), f"rank {rank}:\n{report}"
            reports[rank] = report
    except queue.Empty:
        pytest.fail(f"ranks {sorted(set(range(len(procs))) - set(reports))} did not report")
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return reports


@pytest.mark.parametrize("degrees", LAYOUTS, ids=lambda d: "×".join(f"{k}{v}" for k, v in d.items()))
def test_mesh_groups_are_the_rank_groups_of_every_axis(degrees):
    reports = run_ranks(degrees)
    for rank, report in reports.items():
        assert tuple(report["dims"]) == AXES
        assert list(report["coordinate"]) == [coords(rank, degrees)[axis] for axis in AXES]
        assert report["groups"] == {axis: group_of(rank, axis, degrees) for axis in AXES}
        if degrees.get("pipefusion", 1) > 1:
            pipe = group_of(rank, "pipefusion", degrees)
            assert report["forward"] == pipe and report["return"] == pipe and report["distinct"]
            i = pipe.index(rank)
            assert report["received"] == (pipe[i - 1], -pipe[(i + 1) % len(pipe)])
        else:
            assert "forward" not in report
        if "cfg" in degrees:
            assert report["cfg"] == [float(r) for r in group_of(rank, "cfg", degrees)]


def test_one_rank_has_no_mesh_and_no_groups():
    ctx = DistContext.single({"pipefusion": 1}, 5.0, torch.device("cpu"))
    assert ctx.mesh is None and ctx.pipeline() == [0]
    assert all(ctx.group(axis) is None for axis in AXES)
    assert ctx.forward_group is None and ctx.return_group is None
    ctx.barrier()  # no process group: nothing to wait for
