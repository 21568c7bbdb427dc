"""Collectives as sets of point-to-point transfers on the real routes, joined with ``env.all_of``.

Each algorithm is decomposed into rounds, and the next round starts when all the round's
transfers are done. In a round of a ring algorithm every rank sends one chunk to the next
(NCCL's rings are round-synchronous to a good approximation); an all-to-all is one round in
which every rank sends to every other rank at once (NCCL runs the grouped sends and receives
of an all-to-all "in parallel, up to 8 operations per p2p channel at a time", its maintainer
in NVIDIA/nccl#1028, so with the group sizes a DiT uses every peer is in flight together).
Because the chunks travel through :class:`~simulator.network.Network`, transfers whose routes
share a link (two GPUs behind one PCIe uplink, a rank's own link to its switch) take longer,
exactly as the hardware would make them.

``messages`` lets a caller fold several identical collectives (say one per layer of a
pipeline stage) into one: the bytes are the total, and each round pays the route latency
``messages`` times. Closed form for a ring all-reduce of ``S`` bytes on ``n`` ranks over
disjoint links of bandwidth ``B`` and latency ``α``: ``2(n−1)/n · S/B + 2(n−1)·α``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, Sequence

from simulator.network import Network


def _round(net: Network, pairs: Sequence[tuple[str, str]], nbytes: float, messages: float) -> Generator:
    moves = [(src, dst) for src, dst in pairs if src != dst]
    start_round = getattr(net, "start_round", None)
    if start_round is not None:  # the fair-share network starts a round as one event
        if moves and (done := start_round(moves, int(nbytes), messages)) is not None:
            yield done
        return
    if len(moves) == 1:  # one transfer: no process of its own needed
        yield from net.transfer(moves[0][0], moves[0][1], int(nbytes), messages)
    elif moves:
        yield net.env.all_of([net.env.process(net.transfer(src, dst, int(nbytes), messages)) for src, dst in moves])


def _planned(net: Network, key: tuple, build: Callable[[], list[list[tuple[str, str]]]]) -> list[tuple[tuple[str, str], ...]]:
    """The rounds ``build`` gives, without same-device moves, built once per network for ``key``
    (a collective over one group runs once per pass: its rounds are the same every time)."""
    rounds = net.round_plans.get(key)
    if rounds is None:
        rounds = net.round_plans[key] = [tuple((src, dst) for src, dst in pairs if src != dst) for pairs in build()]
    return rounds


def _rounds(net: Network, rounds: Sequence[Sequence[tuple[str, str]]], nbytes: float, messages: int, *,
            planned: bool = False) -> Generator:
    """``rounds`` one after the other (the next starts when every transfer of the last has ended);
    ``planned``: they come from :func:`_planned` (same-device moves already left out)."""
    start_rounds = getattr(net, "start_rounds", None)
    if start_rounds is not None:  # the fair-share network chains them without an event per round
        moves = rounds if planned else [[(src, dst) for src, dst in pairs if src != dst] for pairs in rounds]
        if (done := start_rounds(moves, int(nbytes), messages)) is not None:
            yield done
        return
    for pairs in rounds:
        yield from _round(net, pairs, nbytes, messages)


def ring_rounds(net: Network, devices: Sequence[str], chunk_bytes: float, rounds: int,
                messages: int = 1) -> Generator:
    """``rounds`` rounds of every rank sending ``chunk_bytes`` to the next rank of the ring."""
    n = len(devices)
    if n < 2:
        return
    plan = _planned(net, ("ring_rounds", tuple(devices), rounds),
                    lambda: [[(devices[i], devices[(i + 1) % n]) for i in range(n)]] * rounds)
    yield from _rounds(net, plan, chunk_bytes, messages, planned=True)


def all_reduce(net: Network, devices: Sequence[str], nbytes: float, messages: int = 1) -> Generator:
    """Ring all-reduce of a ``nbytes`` buffer: reduce-scatter then all-gather, 2(n−1) rounds of nbytes/n
    (or the measured curve of this group, when the links profile has one)."""
    if curve := net.collective_curve("all_reduce", devices):
        yield from net.timed_collective(curve, devices, nbytes, messages)
        return
    n = len(devices)
    yield from ring_rounds(net, devices, nbytes / max(n, 1), 2 * (n - 1), messages)


def all_gather(net: Network, devices: Sequence[str], bytes_per_rank: float, messages: int = 1) -> Generator:
    """Ring all-gather: n−1 rounds, each rank forwarding one rank's ``bytes_per_rank`` block
    (or the measured curve)."""
    if curve := net.collective_curve("all_gather", devices):
        yield from net.timed_collective(curve, devices, bytes_per_rank, messages)
        return
    yield from ring_pass(net, devices, bytes_per_rank, messages)


def ring_pass(net: Network, devices: Sequence[str], bytes_per_rank: float, messages: int = 1) -> Generator:
    """Ring attention's K/V hops: n−1 rounds of point-to-point sends to the next rank (never a
    measured collective curve: the runtime sends them with send/recv)."""
    yield from ring_rounds(net, devices, bytes_per_rank, len(devices) - 1, messages)


def all_to_all(net: Network, devices: Sequence[str], bytes_per_rank: float, messages: int = 1) -> Generator:
    """All-to-all of a ``bytes_per_rank`` buffer: one round in which every rank sends 1/n of it to each
    other rank, all at once (or the measured curve).

    Why one round: NCCL's all-to-all is a group of sends and receives that runs all peers in parallel
    (module docstring). Before 2026-12-03 it was modelled as NCCL's pairwise schedule one shift at a
    time (n − 1 rounds), which charged n − 1 route latencies, left links idle between shifts, and made a
    contended all-to-all the costliest thing the simulator runs (docs/benchmarks.md, round 10)."""
    if curve := net.collective_curve("all_to_all", devices):
        yield from net.timed_collective(curve, devices, bytes_per_rank, messages)
        return
    n = len(devices)
    rounds = _planned(net, ("all_to_all", tuple(devices)),
                      lambda: [[(devices[i], devices[(i + k) % n]) for k in range(1, n) for i in range(n)]])
    yield from _rounds(net, rounds, bytes_per_rank / n, messages, planned=True)


def exchange(net: Network, pairs: Sequence[tuple[str, str]], nbytes: float, messages: float = 1) -> Generator:
    """One round of simultaneous point-to-point sends (CFG's prediction swap, stage-to-stage sends)."""
    yield from _round(net, pairs, nbytes, messages)


def cfg_swap(net: Network, pairs: Sequence[tuple[str, str]], nbytes: float, messages: int = 1) -> Generator:
    """CFG's prediction swap between the two branches' ranks, pair by pair.

    The runtime swaps them with an all-gather over each pair (``DistContext.exchange_cfg``), so
    where the links profile measured that all-gather for a pair's group the swap is timed by it:
    it carries the call's set-up and the ranks' synchronisation, which one round of sends leaves
    out (gloo on cpu2: 3.7 ms a call in the runs against about 1 ms priced as a send, 2026-12-02).
    Without a measured curve: one round of simultaneous point-to-point sends."""
    curves = [net.collective_curve("all_gather", pair) for pair in pairs]
    if not pairs or any(c is None for c in curves):
        yield from _round(net, pairs, nbytes, messages)
        return
    calls = [net.env.process(net.timed_collective(c, pair, nbytes, messages)) for c, pair in zip(curves, pairs)]
    yield net.env.all_of(calls)


def cfg_swap_s(net: Network, pair: tuple[str, str], nbytes: float) -> float | None:
    """The measured all-gather time of one CFG swap over ``pair`` (None: not measured; price the sends)."""
    curve = net.collective_curve("all_gather", pair)
    return None if curve is None else curve.time_s(nbytes, net.bandwidth_scale) + curve.extra_s


@dataclass(frozen=True)
class Algorithm:
    """A collective's simpy algorithm and its closed form: ``rounds(n)`` rounds of ``chunk_bytes(b, n)``
    each, for ``b`` bytes per rank on ``n`` ranks (what :mod:`simulator.estimate` prices).

    ``peers``: how many chunks each rank sends at once in a round (1 for a ring; n − 1 for the
    all-to-all, whose chunks all leave the rank's device together, so its closed form is one
    latency plus the n − 1 chunks at the route's speed)."""

    run: Callable[..., Generator]
    rounds: Callable[[int], int]
    chunk_bytes: Callable[[float, int], float]
    peers: Callable[[int], int] = lambda n: 1


ALGORITHMS: dict[str, Algorithm] = {
    "all_reduce": Algorithm(all_reduce, lambda n: 2 * (n - 1), lambda b, n: b / n),
    "all_gather": Algorithm(all_gather, lambda n: n - 1, lambda b, n: b),
    "all_to_all": Algorithm(all_to_all, lambda n: 1, lambda b, n: b / n, lambda n: n - 1),
    "ring_pass": Algorithm(ring_pass, lambda n: n - 1, lambda b, n: b),
}
"""Collective kind → algorithm; a ring-attention K/V pass moves data like an all-gather."""
