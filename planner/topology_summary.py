"""``pfplan topology show`` on a large cluster: one block per node class, not an N × N matrix.

Hosts stamped from one ``nodes`` entry are identical, and every pair of devices on two
hosts talks over the network (class NET), so a cluster's routes are known from one host of
each class and one pair of hosts per pair of classes: the summary prices those routes only
(a few hundred, however many devices) and counts the rest by multiplication.
"""

from __future__ import annotations

from itertools import combinations, combinations_with_replacement

from profiles.topology.graph import ROUTE_CLASSES, ClusterGraph

FULL_MATRIX_DEVICES = 32
"""Up to this many devices ``topology show`` prints the whole matrix; beyond, the summary (``--full``: the matrix)."""


def _host_devices(cluster: ClusterGraph) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for device in cluster.devices:
        out.setdefault(cluster.device_host[device], []).append(device)
    return out


def summary(cluster: ClusterGraph) -> dict:
    """Per node class: hosts, devices per host, one host's matrix; route classes counted over every pair."""
    by_host = _host_devices(cluster)
    first_host: dict[int, str] = {}
    hosts_of: dict[int, int] = {}
    for host in by_host:
        cls = cluster.host_node[host]
        first_host.setdefault(cls, host)
        hosts_of[cls] = hosts_of.get(cls, 0) + 1
    counts: dict[str, list] = {}

    def add(route_class: str, pairs: int, bw: float, lat: float) -> None:
        entry = counts.setdefault(route_class, [0, bw, lat])
        entry[0] += pairs
        entry[1], entry[2] = min(entry[1], bw), max(entry[2], lat)

    classes = []
    for cls, host in sorted(first_host.items()):
        devices = by_host[host]
        for a, b in combinations(devices, 2):
            r = cluster.route(a, b)
            add(r.route_class, hosts_of[cls], r.bottleneck_gb_s, r.latency_us)
        node = cluster.topology.nodes[cls]
        classes.append({"node": node.name, "hosts": hosts_of[cls], "devices_per_host": len(devices),
                        "gpu": node.gpu, "example_host": host,
                        "matrix": [[cluster.route(a, b).route_class for b in devices] for a in devices]})
    other_host: dict[int, str] = {}
    for host in by_host:  # a second host of each class, for routes between two hosts of one class
        cls = cluster.host_node[host]
        if host != first_host[cls]:
            other_host.setdefault(cls, host)
    for x, y in combinations_with_replacement(sorted(first_host), 2):
        if x == y:
            pairs_of_hosts = hosts_of[x] * (hosts_of[x] - 1) // 2
            hx, hy = first_host[x], other_host.get(x)
        else:
            pairs_of_hosts = hosts_of[x] * hosts_of[y]
            hx, hy = first_host[x], first_host[y]
        if not pairs_of_hosts or hy is None:
            continue
        per_pair = len(by_host[hx]) * len(by_host[hy])
        routes = [cluster.route(a, b) for a in by_host[hx] for b in by_host[hy]]
        for r in routes:
            add(r.route_class, pairs_of_hosts, r.bottleneck_gb_s, r.latency_us)
        assert per_pair == len(routes)
    return {"name": cluster.topology.name, "devices": len(cluster.devices), "hosts": len(by_host),
            "node_classes": classes,
            "route_classes": {cls: {"pairs": n, "min_bottleneck_gb_s": bw, "max_latency_us": lat}
                              for cls, (n, bw, lat) in sorted(counts.items(),
                                                              key=lambda kv: ROUTE_CLASSES.index(kv[0]))}}


def summary_lines(cluster: ClusterGraph) -> list[str]:
    data = summary(cluster)
    lines = [f"{cluster.topology.name}: {cluster.topology.description}".strip(), "",
             f"{data['devices']:,} devices on {data['hosts']:,} hosts (summary per node class; --full prints "
             f"the {data['devices']:,} × {data['devices']:,} matrix)"]
    for cls in data["node_classes"]:
        lines += ["", f"{cls['node']}: {cls['hosts']:,} hosts × {cls['devices_per_host']} {cls['gpu']}; "
                      f"routes inside one host ({cls['example_host']}):"]
        n = cls["devices_per_host"]
        lines.append(" " * 7 + "".join(f"GPU{i}".ljust(6) for i in range(n)))
        for i, row in enumerate(cls["matrix"]):
            lines.append(f"GPU{i}".ljust(7) + "".join(c.ljust(6) for c in row))
    lines += ["", "Route classes over every pair: " + "; ".join(
        f"{cls} {v['pairs']:,} pairs, ≥{v['min_bottleneck_gb_s']:g} GB/s, ≤{v['max_latency_us']:g} µs"
        for cls, v in data["route_classes"].items())]
    return lines
