"""``pfplan topology``: show a cluster the way ``nvidia-smi topo -m`` does, or import one."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from profiles.cli_support import out_console, print_json, warnings_as_lines
from profiles.loading import write_atomic
from profiles.output_guard import guard_outputs
from profiles.topology.format import shipped_topologies
from profiles.topology.graph import ROUTE_CLASSES, ClusterGraph, load_cluster
from profiles.topology.priors import prior_communication
from profiles.topology.smi_import import import_topo_file, topology_yaml


def register(app: typer.Typer) -> None:
    topo = typer.Typer(help="Cluster topologies: show, list, import, calibrate.", no_args_is_help=True)

    @topo.command("list")
    def topology_list(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List the shipped topologies."""
        rows = []
        for name in shipped_topologies():
            cluster = load_cluster(name)
            rows.append({"name": name, "devices": len(cluster.devices), "hosts": len(cluster.hosts()),
                         "gpu": sorted(set(cluster.device_gpu.values())),
                         "description": cluster.topology.description})
        if json_out:
            print_json(rows)
            return
        table = Table(title="Shipped topologies")
        for col in ("name", "devices", "hosts", "gpu", "description"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["name"], str(r["devices"]), str(r["hosts"]), ", ".join(r["gpu"]), r["description"])
        out_console.print(table)

    @topo.command("show")
    def topology_show(topology: str = typer.Argument(..., help="Topology file or shipped name (pcie8)."),
                      json_out: bool = typer.Option(False, "--json", help="Print JSON."),
                      full: bool = typer.Option(False, "--full", help="The whole matrix even on a large cluster.")) -> None:
        """Print the device × device route-class matrix (like nvidia-smi topo -m); a summary per node class
        beyond 32 devices unless --full."""
        from planner.topology_summary import FULL_MATRIX_DEVICES, summary, summary_lines

        cluster = load_cluster(topology)
        if len(cluster.devices) > FULL_MATRIX_DEVICES and not full:
            if json_out:
                print_json({**summary(cluster), "communication": cluster.topology.communication.model_dump()})
                return
            lines = summary_lines(cluster) + ["", cluster.topology.communication.describe()]
            out_console.print("\n".join(lines), markup=False)
            return
        labels = [f"GPU{i}" for i in range(len(cluster.devices))]
        matrix = cluster.route_matrix()
        if json_out:
            routes = {}
            for a in cluster.devices:
                for b in cluster.devices:
                    if a != b:
                        r = cluster.route(a, b)
                        routes[f"{a}->{b}"] = {"class": r.route_class, "bottleneck_gb_s": r.bottleneck_gb_s,
                                               "latency_us": r.latency_us, "path": list(r.nodes)}
            print_json({"name": cluster.topology.name, "devices": cluster.devices,
                        "gpu": cluster.device_gpu, "matrix": matrix, "routes": routes,
                        "communication": cluster.topology.communication.model_dump()})
            return
        width = max(5, *(len(c) for c in ROUTE_CLASSES))
        header = " " * 7 + "".join(label.ljust(width + 1) for label in labels) + "device"
        lines = [f"{cluster.topology.name}: {cluster.topology.description}".strip(), "", header]
        for label, device, row in zip(labels, cluster.devices, matrix):
            cells = "".join(("X" if c == "X" else c).ljust(width + 1) for c in row)
            lines.append(f"{label.ljust(7)}{cells}{device} ({cluster.device_gpu[device]})")
        lines += ["", "Legend:", "  X   = self", "  NVL = NVLink", "  PIX = one PCIe switch",
                  "  PXB = several PCIe switches, no host bridge", "  PHB = through a CPU host bridge",
                  "  SYS = across the inter-socket link", "  NET = across nodes (NIC + network)"]
        pairs = []
        for a in cluster.devices:
            for b in cluster.devices:
                if a < b:
                    r = cluster.route(a, b)
                    pairs.append((r.route_class, r.bottleneck_gb_s, r.latency_us))
        summary = {}
        for cls, bw, lat in pairs:
            s = summary.setdefault(cls, [0, bw, lat])
            s[0] += 1
            s[1], s[2] = min(s[1], bw), max(s[2], lat)
        lines += ["", "Route classes: " + "; ".join(
            f"{cls} {n} pairs, ≥{bw:g} GB/s, ≤{lat:g} µs" for cls, (n, bw, lat) in
            sorted(summary.items(), key=lambda kv: ROUTE_CLASSES.index(kv[0])))]
        lines += ["", cluster.topology.communication.describe()]
        out_console.print("\n".join(lines), markup=False)

    @topo.command("import")
    def topology_import(printout: Path = typer.Argument(..., help="Saved output of `nvidia-smi topo -m`."),
                        output: Path = typer.Option(..., "-o", "--output", help="Topology YAML to write."),
                        gpu: str = typer.Option(..., "--gpu", help="GPU kind from `pfplan gpus` (e.g. a100-sxm)."),
                        name: Optional[str] = typer.Option(None, help="Topology name (default: the output's stem).")
                        ) -> None:
        """Turn a saved `nvidia-smi topo -m` printout into an editable topology file."""
        guard_outputs({"-o": output}, {"PRINTOUT": printout})
        topology = import_topo_file(printout, gpu=gpu, name=name or output.stem)
        classes = set(ClusterGraph(topology, file=str(output)).route_class_counts)
        topology = topology.model_copy(update={"communication": prior_communication(classes)})
        write_atomic(output, topology_yaml(topology))
        cluster = ClusterGraph(topology, file=str(output))
        counts = ", ".join(f"{cls} {n}" for cls, n in sorted(cluster.route_class_counts.items(),
                                                              key=lambda kv: ROUTE_CLASSES.index(kv[0])))
        out_console.print(f"wrote {output}: {len(cluster.devices)} × {gpu}, "
                          f"{len(topology.nodes[0].sockets)} socket(s); GPU pairs by route class: {counts}. "
                          "Link speeds are defaults by route class: edit them or run pfplan profile links.",
                          markup=False)
        out_console.print(topology.communication.describe(brief=True) + "; calibrate with `pfplan topology calibrate` "
                          "or `pfplan profile links` / `pfplan profile overlap`", markup=False)

    @topo.command("calibrate")
    def topology_calibrate(
        ctx: typer.Context,
        topology: str = typer.Option(..., "--topology", help="Topology file or shipped name to calibrate."),
        measurements: str = typer.Option(..., "--measurements",
                                         help="Measured runs (YAML; see docs/formats.md) or a shipped name."),
        profile: Optional[str] = typer.Option(None, help="Compute profile (calibrate it first); "
                                                         "default: the GPU's analytic roofline."),
        output: Path = typer.Option(..., "-o", "--output", help="Calibrated topology YAML to write."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Fit the topology's communication efficiencies (bandwidth, overlap) to measured runs."""
        from planner.commands_profile import command_line
        from planner.topology_calibration import calibrate_topology
        from profiles.costs.selection import cost_model_for
        from profiles.catalog.measured_runs import load_measured_runs
        from profiles.catalog.models import load_model

        guard_outputs({"-o": output}, {"--topology": topology, "--measurements": measurements, "--profile": profile})
        cluster = load_cluster(topology)
        runs, runs_path = load_measured_runs(measurements)
        preset = load_model(runs.model)
        cost_model = cost_model_for(preset, cluster.gpu_of(cluster.devices[0]), profile)
        with warnings_as_lines():
            result = calibrate_topology(cluster.topology, preset, cost_model, runs, file=str(runs_path),
                                        source=command_line(ctx))
        calibrated = cluster.topology.model_copy(update={"communication": result.communication})
        write_atomic(output, topology_yaml(calibrated))
        comm = result.communication
        if json_out:
            print_json({"output": str(output), "communication": comm.model_dump(), "fitted": result.fitted,
                        "ties": {name: list(span) for name, span in result.ties.items()},
                        "rms_log_error": {"before": result.rms_log_error(False), "after": result.rms_log_error(True)},
                        "runs": [{"label": c.run.name(), "parallel": c.run.parallel, "resolution": c.run.resolution,
                                  "kind": c.kind, "measured_s": c.run.latency_s, "before_s": c.before_s,
                                  "after_s": c.after_s} for c in result.checks]})
            return
        table = Table(title=f"{cluster.topology.name}: measured vs simulated ({cost_model.name})")
        for col in ("run", "px", "fits", "measured s", "before s", "after s", "after / measured"):
            table.add_column(col)
        for c in result.checks:
            fits = {"compute": "- (compute check)", "blocking": "bandwidth", "overlapped": "overlap"}[c.kind]
            table.add_row(c.run.name(), str(c.run.resolution), fits, f"{c.run.latency_s:.4g}", f"{c.before_s:.4g}",
                          f"{c.after_s:.4g}", f"{c.after_s / c.run.latency_s:.2f}")
        out_console.print(table)
        out_console.print(f"wrote {output}: bandwidth_efficiency {comm.bandwidth_efficiency:.3g} "
                          f"(was {result.previous.bandwidth_efficiency:.3g}), overlap_efficiency "
                          f"{comm.overlap_efficiency:.3g} (was {result.previous.overlap_efficiency:.3g}); "
                          f"rms log error of the runs with communication {result.rms_log_error(False):.3f} -> "
                          f"{result.rms_log_error(True):.3f}", markup=False)

    app.add_typer(topo, name="topology")
