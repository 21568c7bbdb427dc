"""The bad-input corpus (issue 16): every command and every format, each case one table row.

Each case writes its files into an empty folder (the working directory while it runs), runs
``pfplan`` or ``pfrun`` in-process as a user would type it and checks the promise of
docs/reliability.md: exit code 2, exactly one line on stderr (``prog: error: ...``) that holds
the case's needles (the file, the field or option, the expectation), no traceback, and not
one file changed or created (sha256 of every file in the folder before and after).
The valid documents the cases break are made once per session by the real commands.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from profiles.catalog.models import MODELS_DIR
from profiles.costs.profile_format import PROFILES_DIR
from profiles.topology.format import TOPOLOGIES_DIR

CPU2 = (TOPOLOGIES_DIR / "cpu2.yaml").read_text()
PCIE8 = (TOPOLOGIES_DIR / "pcie8.yaml").read_text()
TINY = (MODELS_DIR / "dit-tiny.yaml").read_text()
PROFILE = json.loads((PROFILES_DIR / "dit-tiny-cpu.json").read_text())
MEASURED = ("schema_version: 1\nmodel: dit-tiny\nbox: test\nsource: test\nruns:\n"
            "  - {parallel: serial=1, resolution: 128, steps: 4, latency_s: 0.5}\n"
            "  - {parallel: pipefusion=2, resolution: 128, steps: 4, latency_s: 0.4}\n")
SECRET = "password: hunter2-do-not-echo\n" * 3
ALIAS_BOMB = "".join(["a: &a [x, x, x, x, x, x, x, x, x]\n"]
                     + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)])


def edit(text: str, old: str, new: str) -> str:
    """``text`` with one edit, which must apply."""
    assert old in text, old
    return text.replace(old, new, 1)


def cpu2(old: str, new: str) -> str:
    return edit(CPU2, old, new)


def tiny(old: str, new: str) -> str:
    return edit(TINY, old, new)


def plan_doc(**fields: Any) -> dict[str, Any]:
    return {"schema_version": 1, "model": "dit-tiny", "height_px": 128, "width_px": 128, "steps": 4,
            "degrees": {"pipefusion": 2}, "patches": 2, "warmup_steps": 1, "topology": "cpu2", **fields}


def as_json(doc: Any) -> str:
    return json.dumps(doc)


def profile_with(path: tuple, value: Any) -> str:
    doc = json.loads(json.dumps(PROFILE))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(doc)


@dataclass
class Case:
    args: list[str]
    files: dict[str, str | bytes | Callable[[dict[str, str]], str]] = field(default_factory=dict)
    needles: tuple[str, ...] = ()
    prog: str = "pfplan"
    patch: tuple[str, str, Any] | None = None
    """(module, attribute, value) set for the case (e.g. a smaller file-size limit)."""


def from_fixture(name: str, change: Callable[[dict], Any] | None = None) -> Callable[[dict[str, str]], str]:
    """A file made from one of the session's valid documents (search.json, trace.json), then broken."""
    def make(valid: dict[str, str]) -> str:
        if change is None:
            return valid[name]
        doc = json.loads(valid[name])
        change(doc)
        return json.dumps(doc)
    return make


def setitem(path: tuple, value: Any) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


SIM = ["simulate", "--model", "dit-tiny", "--resolution", "128", "--parallel", "pipefusion=2"]
SEARCH = ["search", "--model", "dit-tiny", "--resolution", "128"]
CAP = ["capacity", "--model", "dit-tiny", "--resolution", "128"]
RUN = ["--device", "cpu"]

CASES: dict[str, Case] = {}


def add(group: str, name: str, case: Case) -> None:
    key = f"{group}: {name}"
    assert key not in CASES, key
    CASES[key] = case


# ---- topology YAML, through every command that reads one ----
TOPOLOGY_BREAKS = {
    "bandwidth .inf": (cpu2("bandwidth_gb_s: 4.74", "bandwidth_gb_s: .inf"), "device_link.bandwidth_gb_s", "finite"),
    "bandwidth 1.0e+400": (cpu2("bandwidth_gb_s: 4.74", "bandwidth_gb_s: 1.0e+400"), "bandwidth_gb_s", "finite"),
    "bandwidth .nan": (cpu2("bandwidth_gb_s: 4.74", "bandwidth_gb_s: .nan"), "bandwidth_gb_s", "finite"),
    "latency .inf": (cpu2("latency_us: 22.95", "latency_us: .inf"), "device_link.latency_us", "finite"),
    "latency negative": (cpu2("latency_us: 22.95", "latency_us: -1"), "latency_us", "greater than or equal"),
    "bandwidth a boolean": (cpu2("bandwidth_gb_s: 4.74", "bandwidth_gb_s: true"), "bandwidth_gb_s", "a boolean is not a number"),
    "count a boolean": (cpu2("  - name: node0\n", "  - name: node0\n    count: true\n"), "nodes[0].count", "a boolean is not a number"),
    "count zero": (cpu2("  - name: node0\n", "  - name: node0\n    count: 0\n"), "nodes[0].count", "greater than"),
    "count fractional": (cpu2("  - name: node0\n", "  - name: node0\n    count: 1.5\n"), "nodes[0].count", "integer"),
    "efficiency above 1": (cpu2("  overlap_efficiency: 0.1964", "  bandwidth_efficiency: 1.5\n  overlap_efficiency: 0.1964"),
                           "communication.bandwidth_efficiency", "less than or equal"),
    "overlap .nan": (cpu2("overlap_efficiency: 0.1964", "overlap_efficiency: .nan"),
                     "communication.overlap_efficiency", "finite"),
    "NVLink self-loop": (cpu2("        gpus: [rank0, rank1]\n", "        gpus: [rank0, rank1]\n    nvlink:\n"
                              "      - {gpus: [rank0, rank0], link: {bandwidth_gb_s: 100, latency_us: 1}}\n"),
                         "nodes[0].nvlink[0].gpus", "twice"),
    "an anchor and alias": (cpu2("    device_link: {bandwidth_gb_s: 4.74, latency_us: 22.95}",
                                 "    device_link: &l {bandwidth_gb_s: 4.74, latency_us: 22.95}\n    socket_link: *l"),
                            "anchors and aliases", "line"),
    "an alias bomb": (ALIAS_BOMB, "anchors and aliases", "line 1"),
    "gpu a number": (cpu2("gpu: cpu", "gpu: 5"), "nodes[0].gpu", "string"),
    "no nodes": (cpu2("nodes:\n", "nodes: []\nx_nodes:\n"), "topo.yaml", "unknown field"),
    "not UTF-8": (b"\xff\xfe\x00bad", "not a text file", "UTF-8"),
}
TOPOLOGY_COMMANDS = {
    "topology show": ["topology", "show", "topo.yaml"],
    "simulate": [*SIM, "--topology", "topo.yaml"],
    "search": [*SEARCH, "--topology", "topo.yaml", "-o", "plan.json"],
    "capacity": [*CAP, "--topology", "topo.yaml", "--rate", "1"],
    "plan new": ["plan", "new", "--model", "dit-tiny", "--topology", "topo.yaml", "--parallel", "pipefusion=2",
                 "--resolution", "128", "-o", "plan.json"],
    "topology calibrate": ["topology", "calibrate", "--topology", "topo.yaml", "--measurements", "runs.yaml",
                           "-o", "out.yaml"],
    "profile links": ["profile", "links", "--topology", "topo.yaml", "-o", "links.json"],
    "profile overlap": ["profile", "overlap", "--topology", "topo.yaml"],
}
for i, (name, (text, *needles)) in enumerate(TOPOLOGY_BREAKS.items()):
    add("topology show", name, Case(TOPOLOGY_COMMANDS["topology show"], {"topo.yaml": text},
                                    ("topo.yaml", *needles)))
# every other reader of a topology, each with a few of the breaks (the loader is shared)
for i, (command, args) in enumerate(list(TOPOLOGY_COMMANDS.items())[1:]):
    for name in list(TOPOLOGY_BREAKS)[i::3][:3]:
        text, *needles = TOPOLOGY_BREAKS[name]
        add(command, f"topology {name}", Case(args, {"topo.yaml": text, "runs.yaml": MEASURED},
                                              ("topo.yaml", *needles)))

# ---- model preset YAML ----
PRESET_BREAKS = {
    "steps a boolean": (tiny("default_steps: 4", "default_steps: true"), "default_steps", "a boolean is not a number"),
    "steps zero": (tiny("default_steps: 4", "default_steps: 0"), "default_steps", "greater than"),
    "resolution .inf": (tiny("default_resolution: 256", "default_resolution: .inf"), "default_resolution"),
    "uses_cfg a number": (tiny("uses_cfg: true", "uses_cfg: 7"), "uses_cfg", "valid boolean"),
    "text_tokens negative": (tiny("text_tokens: 0", "text_tokens: -3"), "text_tokens"),
    "unknown family": (tiny("family: dit", "family: ditt"), "family"),
    "misspelt key": (tiny("scheduler:", "schedular:"), "schedular", "unknown field"),
    "an alias bomb": (ALIAS_BOMB, "anchors and aliases"),
    "an anchor": (tiny("tiny: true", "tiny: &t true\ntiny_again: *t"), "anchors and aliases"),
    "not a mapping": ("- dit\n", "expected a mapping"),
    "layers a boolean": (tiny("num_layers: 4", "num_layers: true"), "config.num_layers"),
    "yaml syntax": (tiny("config: {", "config: {{"), "invalid YAML"),
}
for name, (text, *needles) in PRESET_BREAKS.items():
    add("models show", name, Case(["models", "show", "m.yaml"], {"m.yaml": text}, ("m.yaml", *needles)))
PRESET_COMMANDS = {
    "simulate": ["simulate", "--model", "m.yaml", "--resolution", "128", "--parallel", "pipefusion=2",
                 "--topology", "cpu2"],
    "search": ["search", "--model", "m.yaml", "--topology", "cpu2", "--resolution", "128"],
    "capacity": ["capacity", "--model", "m.yaml", "--topology", "cpu2", "--resolution", "128", "--rate", "1"],
    "profile analytic": ["profile", "analytic", "--gpu", "a100-pcie", "--model", "m.yaml", "-o", "p.json"],
    "plan new": ["plan", "new", "--model", "m.yaml", "--topology", "cpu2", "--parallel", "pipefusion=2",
                 "-o", "plan.json"],
}
for i, (command, args) in enumerate(PRESET_COMMANDS.items()):
    for name in list(PRESET_BREAKS)[i::4][:3]:
        text, *needles = PRESET_BREAKS[name]
        add(command, f"preset {name}", Case(args, {"m.yaml": text}, ("m.yaml", *needles)))

# ---- plan JSON, through every command that reads one ----
PLAN_BREAKS = {
    "steps a boolean": (as_json(plan_doc(steps=True)), "steps", "a boolean is not a number"),
    "steps zero": (as_json(plan_doc(steps=0)), "steps", "greater than"),
    "steps fractional": (as_json(plan_doc(steps=2.5)), "steps", "integer"),
    "height NaN": ('{"schema_version": 1, "model": "dit-tiny", "height_px": NaN, "width_px": 128, "steps": 4}',
                   "height_px"),
    "patches a boolean": (as_json(plan_doc(patches=True)), "patches", "a boolean is not a number"),
    "degree a boolean": (as_json(plan_doc(degrees={"pipefusion": True})), "degrees.pipefusion", "a boolean is not a number"),
    "warm-up negative": (as_json(plan_doc(warmup_steps=-1)), "warmup_steps", "greater than or equal"),
    "prediction Infinity": (as_json(plan_doc(prediction={"latency_s": float("inf")})),
                            "prediction.latency_s", "finite"),
    "truncated": (as_json(plan_doc())[:40], "invalid JSON"),
    "a list": ("[1, 2]", "expected a mapping"),
    "topology path missing beside the plan": (as_json(plan_doc(topology="box/topo.yaml")), "topology",
                                               "next to the plan"),
    "model path missing beside the plan": (as_json(plan_doc(model="presets/m.yaml")), "model", "next to the plan"),
    "topology path to a file that is no topology": (as_json(plan_doc(topology="secret.yaml")), "secret.yaml",
                                                     "unknown field"),
    "unknown model name": (as_json(plan_doc(model="dit-tinyy")), "model", "did you mean"),
    "placement a number": (as_json(plan_doc(placement=3)), "placement"),
}
PLAN_COMMANDS = {
    "plan validate": ["plan", "validate", "plan.json"],
    "simulate --plan": ["simulate", "--plan", "plan.json"],
    "plan export": ["plan", "export", "plan.json", "--to", "xdit"],
    "pfrun --plan": ["--plan", "plan.json", *RUN],
}
for command, args in PLAN_COMMANDS.items():
    names = list(PLAN_BREAKS) if command in ("plan validate", "pfrun --plan") else list(PLAN_BREAKS)[::2]
    if command == "plan export":  # export reads no topology file
        names = [n for n in names if "topology" not in n]
    for name in names:
        text, *needles = PLAN_BREAKS[name]
        needles = (*needles,) if "secret.yaml" in needles else ("plan.json", *needles)
        add(command, f"plan {name}", Case(args, {"plan.json": text, "secret.yaml": SECRET}, needles,
                                          prog="pfrun" if command.startswith("pfrun") else "pfplan"))

# ---- profile JSON ----
PROFILE_BREAKS = {
    "median NaN": (profile_with(("layers", "embed", 0, "median_s"), float("nan")), "median_s", "finite"),
    "median negative": (profile_with(("layers", "embed", 0, "median_s"), -1.0), "median_s", "greater than"),
    "repeats a boolean": (profile_with(("layers", "embed", 0, "repeats"), True), "repeats", "a boolean is not a number"),
    "batch zero": (profile_with(("layers", "embed", 0, "batch"), 0), "batch", "greater than"),
    "unknown field": (profile_with(("layerz",), {}), "layerz", "unknown field"),
    "truncated": (json.dumps(PROFILE)[:100], "invalid JSON"),
}
PROFILE_COMMANDS = {
    "profile show": ["profile", "show", "prof.json"],
    "simulate --profile": [*SIM, "--topology", "cpu2", "--profile", "prof.json"],
    "search --profile": [*SEARCH, "--topology", "cpu2", "--profile", "prof.json"],
    "profile calibrate": ["profile", "calibrate", "--profile", "prof.json", "--model", "dit-tiny", "--resolution",
                          "128", "--steps", "4", "--measured-serial", "0.5", "-o", "cal.json"],
}
for command, args in PROFILE_COMMANDS.items():
    for name in (PROFILE_BREAKS if command == "profile show" else list(PROFILE_BREAKS)[::2]):
        text, *needles = PROFILE_BREAKS[name]
        add(command, f"profile {name}", Case(args, {"prof.json": text}, ("prof.json", *needles)))

# ---- search results (pfplan report) and traces (pfplan validate) ----
REPORT = ["report", "s.json", "-o", "r.html"]
for name, change, needles in [
    ("no candidates", setitem(("candidates",), []), ("candidates", "at least 1")),
    ("latency NaN", setitem(("candidates", 0, "latency_s"), float("nan")), ("candidates[0].latency_s", "finite")),
    ("devices a boolean", setitem(("candidates", 0, "devices"), True), ("candidates[0].devices", "a boolean is not a number")),
    ("steps a string", setitem(("steps",), "many"), ("steps", "integer")),
    ("unknown field", setitem(("candidatez",), []), ("candidatez", "unknown field")),
    ("plan steps zero", setitem(("candidates", 0, "plan", "steps"), 0), ("candidates[0].plan.steps",)),
]:
    add("report", f"search results {name}", Case(REPORT, {"s.json": from_fixture("search", change)},
                                                  ("s.json", *needles)))
add("report", "search results truncated", Case(REPORT, {"s.json": lambda v: v["search"][:200]},
                                               ("s.json", "invalid JSON")))
add("report", "neither a plan nor a search", Case(REPORT, {"s.json": '{"x": 1}'}, ("s.json", "expected a plan.json")))
VALIDATE = ["validate", "sim.json", "meas.json"]
for name, change, needles in [
    ("event ts NaN", setitem(("traceEvents", 2, "ts"), float("nan")), ("traceEvents[2].ts", "finite")),
    ("event duration negative", setitem(("traceEvents", 2, "dur"), -5.0), ("traceEvents[2].dur",)),
    ("event tid a boolean", setitem(("traceEvents", 2, "tid"), True), ("traceEvents[2].tid", "a boolean is not a number")),
    ("unknown phase", setitem(("traceEvents", 2, "ph"), "Q"), ("traceEvents[2].ph",)),
]:
    add("validate", f"trace {name}", Case(VALIDATE, {"sim.json": from_fixture("trace", change),
                                                     "meas.json": from_fixture("trace")}, ("sim.json", *needles)))
add("validate", "trace truncated", Case(VALIDATE, {"sim.json": lambda v: v["trace"][:50],
                                                   "meas.json": from_fixture("trace")}, ("sim.json", "invalid JSON")))

# ---- measured runs (topology calibrate) ----
CAL = ["topology", "calibrate", "--topology", "cpu2", "--measurements", "runs.yaml", "-o", "out.yaml"]
for name, text, needles in [
    ("latency .inf", edit(MEASURED, "latency_s: 0.5", "latency_s: .inf"), ("runs[0].latency_s", "finite")),
    ("resolution a boolean", edit(MEASURED, "resolution: 128", "resolution: true"), ("runs[0].resolution", "a boolean is not a number")),
    ("steps zero", edit(MEASURED, "steps: 4", "steps: 0"), ("runs[0].steps",)),
    ("an alias", edit(MEASURED, "  - {parallel: pipefusion=2", "  - &r {parallel: pipefusion=2") + "  - *r\n",
     ("anchors and aliases",)),
]:
    add("topology calibrate", f"measured runs {name}", Case(CAL, {"runs.yaml": text}, ("runs.yaml", *needles)))

# ---- numeric options: finite and in range, one place for every command ----
OPTION_CASES = [
    ("capacity", [*CAP, "--topology", "cpu2", "--rate", "nan"], "--rate"),
    ("capacity", [*CAP, "--topology", "cpu2", "--rate", "inf"], "--rate"),
    ("capacity", [*CAP, "--topology", "cpu2", "--rate", "-1"], "--rate"),
    ("capacity", [*CAP, "--topology", "cpu2", "--rate", "0"], "--rate"),
    ("capacity", [*CAP, "--topology", "cpu2", "--rate", "1", "--slo-s", "nan"], "--slo-s"),
    ("capacity", [*CAP, "--topology", "cpu2", "--rate", "1", "--slo-s", "-inf"], "--slo-s"),
    ("capacity", [*CAP, "--topology", "cpu2", "--rate", "1", "--slo-s", "0"], "--slo-s"),
    ("search", [*SEARCH, "--topology", "cpu2", "--steps", "0"], "--steps"),
    ("search", [*SEARCH, "--topology", "cpu2", "--max-gpus", "0"], "--max-gpus"),
    ("search", [*SEARCH, "--topology", "cpu2", "--objective", "fastest"], "--objective"),
    ("search", ["search", "--model", "dit-tiny", "--topology", "cpu2", "--resolution", "-128"], "--resolution"),
    ("simulate", [*SIM, "--topology", "cpu2", "--network", "magic"], "--network"),
    ("simulate", [*SIM, "--topology", "cpu2", "--steps", "true"], "--steps"),
    ("profile calibrate", ["profile", "calibrate", "--profile", "dit-tiny-cpu", "--model", "dit-tiny",
                           "--resolution", "128", "--steps", "4", "--measured-serial", "nan", "-o", "c.json"],
     "--measured-serial"),
    ("profile calibrate", ["profile", "calibrate", "--profile", "dit-tiny-cpu", "--model", "dit-tiny",
                           "--resolution", "128", "--steps", "4", "--measured-serial", "inf", "-o", "c.json"],
     "--measured-serial"),
    ("profile overlap", ["profile", "overlap", "--topology", "cpu2", "--compute-s", "nan"], "--compute-s"),
    ("models show", ["models", "show", "dit-tiny", "--resolution", "0"], "--resolution"),
]
for i, (command, args, option) in enumerate(OPTION_CASES):
    add(command, f"option {option} #{i}", Case(args, {}, (option,)))
for i, (args, option) in enumerate([
    (["--timeout", "nan"], "--timeout"), (["--timeout", "inf"], "--timeout"), (["--timeout", "0"], "--timeout"),
    (["--threads", "0"], "--threads"), (["--dtype", "float8"], "--dtype"), (["--device", "tpu"], "--device"),
    (["--seed", "1.5"], "--seed"),
]):
    add("pfrun", f"option {option} #{i}", Case(["--plan", "plan.json", *args], {"plan.json": as_json(plan_doc())},
                                               (option,), prog="pfrun"))

# ---- outputs: never an input, never a missing or unwritable place, all or none ----
GOOD_PLAN = as_json(plan_doc())
OUTPUT_CASES = [
    ("search", [*SEARCH, "--topology", "t.yaml", "-o", "t.yaml"], {"t.yaml": CPU2}, ("t.yaml", "-o", "also an input")),
    ("search", [*SEARCH, "--topology", "cpu2", "-o", "x.json", "--results", "x.json"], {},
     ("x.json", "--results", "same file")),
    ("search", [*SEARCH, "--topology", "cpu2", "-o", "nowhere/plan.json"], {}, ("nowhere/plan.json", "-o",
                                                                                 "does not exist")),
    ("search", [*SEARCH, "--topology", "cpu2", "-o", "/proc/pfplan-x.json"], {}, ("/proc/pfplan-x.json", "-o",
                                                                                   "cannot write")),
    ("search", [*SEARCH, "--topology", "cpu2", "-o", "plan.json", "--results", "/proc/s.json"], {},
     ("/proc/s.json", "--results", "cannot write")),
    ("search", [*SEARCH, "--topology", "cpu2", "-o", "."], {}, (".", "-o", "is a directory")),
    ("search", [*SEARCH, "--topology", "cpu2", "--profile", "prof.json", "-o", "prof.json"],
     {"prof.json": json.dumps(PROFILE)}, ("prof.json", "-o", "also an input")),
    ("simulate", ["simulate", "--plan", "plan.json", "--trace", "plan.json"], {"plan.json": GOOD_PLAN},
     ("plan.json", "--trace", "also an input")),
    ("simulate", ["simulate", "--plan", "plan.json", "--trace", "/proc/t.json"], {"plan.json": GOOD_PLAN},
     ("/proc/t.json", "--trace", "cannot write")),
    ("report", ["report", "s.json", "-o", "s.json"], {"s.json": from_fixture("search")},
     ("s.json", "-o", "also an input")),
    ("report", ["report", "s.json", "-o", "missing/r.html"], {"s.json": from_fixture("search")},
     ("missing/r.html", "-o", "does not exist")),
    ("models import", ["models", "import", "cfg.json", "-o", "cfg.json"],
     {"cfg.json": json.dumps({"_class_name": "DiTTransformer2DModel", "num_layers": 2})},
     ("cfg.json", "-o", "also an input")),
    ("topology import", ["topology", "import", "topo.txt", "-o", "topo.txt", "--gpu", "l40"], {"topo.txt": "GPU0\n"},
     ("topo.txt", "-o", "also an input")),
    ("topology calibrate", ["topology", "calibrate", "--topology", "t.yaml", "--measurements", "runs.yaml",
                            "-o", "t.yaml"], {"t.yaml": CPU2, "runs.yaml": MEASURED}, ("t.yaml", "-o", "also an input")),
    ("topology calibrate", ["topology", "calibrate", "--topology", "cpu2", "--measurements", "runs.yaml",
                            "-o", "runs.yaml"], {"runs.yaml": MEASURED}, ("runs.yaml", "-o", "also an input")),
    ("plan new", ["plan", "new", "--model", "m.yaml", "--topology", "cpu2", "--parallel", "pipefusion=2",
                  "-o", "m.yaml"], {"m.yaml": TINY}, ("m.yaml", "--output", "also an input")),
    ("plan new", ["plan", "new", "--model", "dit-tiny", "--topology", "cpu2", "--parallel", "pipefusion=2",
                  "-o", "/proc/plan.json"], {}, ("/proc/plan.json", "--output", "cannot write")),
    ("profile analytic", ["profile", "analytic", "--gpu", "a100-pcie", "--model", "m.yaml", "-o", "m.yaml"],
     {"m.yaml": TINY}, ("m.yaml", "-o", "also an input")),
    ("profile calibrate", ["profile", "calibrate", "--profile", "prof.json", "--model", "dit-tiny", "--resolution",
                           "128", "--steps", "4", "--measured-serial", "0.5", "-o", "prof.json"],
     {"prof.json": json.dumps(PROFILE)}, ("prof.json", "-o", "also an input")),
    ("profile links", ["profile", "links", "-o", "l.json", "--write-topology", "l.json"], {},
     ("l.json", "--write-topology", "same file")),
    ("profile links", ["profile", "links", "-o", "l.json", "--write-topology", "nowhere/t.yaml"], {},
     ("nowhere/t.yaml", "--write-topology", "does not exist")),
    ("profile overlap", ["profile", "overlap", "--topology", "t.yaml", "--write-topology", "t.yaml"],
     {"t.yaml": CPU2}, ("t.yaml", "--write-topology", "also an input")),
    ("profile compute", ["profile", "compute", "--model", "dit-tiny", "-o", "/proc/p.json"], {},
     ("/proc/p.json", "-o", "cannot write")),
]
for i, (command, args, files, needles) in enumerate(OUTPUT_CASES):
    add(command, f"output #{i} {needles[-1]}", Case(args, files, needles))
for i, (args, needles) in enumerate([
    (["--out", "plan.json"], ("plan.json", "--out", "also an input")),
    (["--out", "/proc/x.png"], ("/proc/x.png", "--out", "cannot write")),
    (["--out", "missing/x.png"], ("missing/x.png", "--out", "does not exist")),
    (["--out", "x.png", "--trace", "x.png"], ("x.png", "--trace", "same file")),
    (["--trace", "plan.json"], ("plan.json", "--trace", "also an input")),
    (["--trace", "/proc/t.json"], ("/proc/t.json", "--trace", "cannot write")),
]):
    add("pfrun", f"output #{i} {needles[-1]}", Case(["--plan", "plan.json", *args, *RUN],
                                                    {"plan.json": as_json(plan_doc())}, needles, prog="pfrun"))

# ---- limits ----
add("topology show", "a file over the size limit", Case(["topology", "show", "topo.yaml"], {"topo.yaml": CPU2},
                                                       ("topo.yaml", "MiB", "more than"),
                                                       patch=("profiles.loading", "MAX_FILE_BYTES", 1024)))
add("plan validate", "a plan over the size limit", Case(["plan", "validate", "plan.json"], {"plan.json": GOOD_PLAN},
                                                        ("plan.json", "MiB"),
                                                        patch=("profiles.loading", "MAX_FILE_BYTES", 64)))


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def valid_documents(tmp_path_factory) -> dict[str, str]:
    """A real search.json and trace.json, made by pfplan search and simulate (in-process)."""
    from planner.cli import app
    from profiles.cli_support import run_app

    folder = tmp_path_factory.mktemp("valid")
    assert run_app(app, "pfplan", ["search", "--topology", "cpu2", "--model", "dit-tiny", "--resolution", "128",
                                   "-o", str(folder / "plan.json"), "--results", str(folder / "search.json")]) == 0
    assert run_app(app, "pfplan", ["simulate", "--plan", str(folder / "plan.json"), "--trace",
                                   str(folder / "trace.json")]) == 0
    return {"search": (folder / "search.json").read_text(), "trace": (folder / "trace.json").read_text()}


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_corpus_is_large_and_covers_every_command():
    commands = {key.split(":")[0] for key in CASES}
    assert len(CASES) >= 120, len(CASES)
    for command in ("profile show", "profile calibrate", "profile links", "profile overlap", "profile analytic",
                    "profile compute", "simulate", "search", "capacity", "report", "topology show",
                    "topology import", "topology calibrate", "models show", "models import", "plan validate",
                    "plan new", "plan export", "validate", "pfrun"):
        assert any(c == command or c.startswith(command) for c in commands), command


@pytest.mark.parametrize("key", list(CASES))
def test_bad_input(key, tmp_path, monkeypatch, capsys, valid_documents):
    case = CASES[key]
    monkeypatch.chdir(tmp_path)
    for name, content in case.files.items():
        content = content(valid_documents) if callable(content) else content
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    if case.patch:
        import importlib

        module, attr, value = case.patch
        monkeypatch.setattr(importlib.import_module(module), attr, value)
    before = checksums(tmp_path)
    from profiles.cli_support import run_app

    if case.prog == "pfrun":
        from runtime.cli import app
    else:
        from planner.cli import app
    code = run_app(app, case.prog, case.args)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith(f"{case.prog}: error: "), lines[0]
    for needle in case.needles:
        assert needle in lines[0], (needle, lines[0])
    assert "hunter2" not in err  # an error quotes fields and values, never a file's text
    assert checksums(tmp_path) == before, "a file was changed or created"
