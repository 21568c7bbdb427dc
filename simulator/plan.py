"""The parallel plan: the contract between the planner, the simulator and the runtime.

One pydantic model says how to run one image generation: the parallel degrees, PipeFusion's
patches, warm-up and stage split, and which topology device each rank runs on. One
:func:`validate` checks every rule against the model and the cluster and reports *all*
violations in one message, each naming its field.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from profiles.errors import InputError
from profiles.models import ModelPreset
from profiles.topology_graph import ClusterGraph
from simulator.errors import PlanError
from simulator.rank_groups import AXES

TOOL_VERSION = "0.1.0"


class Degrees(BaseModel):
    """Parallel degrees; their product is the number of ranks. 1 means disabled."""

    model_config = ConfigDict(extra="forbid")

    data: int = Field(1, ge=1, description="Independent replicas, each generating its own images.")
    cfg: int = Field(1, ge=1, le=2, description="CFG parallel: cond and uncond halves on two device groups.")
    pipefusion: int = Field(1, ge=1, description="PipeFusion pipeline stages (displaced patch pipeline).")
    distrifusion: int = Field(1, ge=1, description="DistriFusion patch parallel (stale K/V all-gathered).")
    ring: int = Field(1, ge=1, description="Ring attention sequence parallel.")
    ulysses: int = Field(1, ge=1, description="Ulysses (all-to-all over heads) sequence parallel.")
    tensor: int = Field(1, ge=1, description="Tensor (Megatron) parallel: heads and MLP width sharded.")

    def world_size(self) -> int:
        size = 1
        for axis in AXES:
            size *= getattr(self, axis)
        return size

    def as_dict(self) -> dict[str, int]:
        return {axis: getattr(self, axis) for axis in AXES}

    def active(self) -> dict[str, int]:
        return {axis: n for axis, n in self.as_dict().items() if n > 1}

    def label(self) -> str:
        """``cfg2×pipefusion4`` (``serial`` when nothing is parallel)."""
        return "×".join(f"{axis}{n}" for axis, n in self.active().items()) or "serial"


class Prediction(BaseModel):
    """What the simulator predicted for this plan."""

    model_config = ConfigDict(extra="forbid")

    latency_s: float = Field(ge=0, description="End-to-end latency of one generation.")
    breakdown_s: dict[str, float] = Field(default_factory=dict, description="Where the time goes (seconds).")
    peak_memory_bytes: dict[str, int] = Field(default_factory=dict, description="Per device id.")
    memory_capacity_bytes: dict[str, int] = Field(default_factory=dict, description="Per device id.")
    bytes_by_route_class: dict[str, int] = Field(default_factory=dict)
    throughput_images_per_s: float | None = None
    cost_model: str = Field("", description="analytic:<gpu> or profile:<file> the prediction used.")
    unpriced: list[str] = Field(default_factory=list, description="Optional costs the cost model could not price "
                                "(priced 0): scheduler_step_time_s, pass_overhead_s, first_pass_overhead_s, "
                                "vae_decode_time_s.")


class Provenance(BaseModel):
    """Where a plan came from, so a user can reproduce it."""

    model_config = ConfigDict(extra="forbid")

    tool_version: str = TOOL_VERSION
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    command: str = ""
    topology: str | None = None
    topology_sha256: str | None = None
    profile: str | None = None
    profile_sha256: str | None = None


class ParallelPlan(BaseModel):
    """How to run one generation of ``model`` on a cluster."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    model: str = Field(description="Preset name, preset file or diffusers config path.")
    height_px: int = Field(gt=0)
    width_px: int = Field(gt=0)
    steps: int = Field(gt=0, description="Diffusion steps T.")
    degrees: Degrees = Field(default_factory=Degrees)
    patches: int = Field(1, ge=1, description="PipeFusion patches M (row bands of the latent).")
    warmup_steps: int = Field(0, ge=0, description="Synchronous full-image warm-up steps W.")
    stage_split: list[int] | None = Field(None, description="Transformer blocks per PipeFusion stage; None: even split.")
    placement: list[str] = Field(default_factory=list, description="Device id of each rank; empty: the first devices in topology order.")
    topology: str | None = Field(None, description="Topology name or path the placement refers to.")
    prediction: Prediction | None = None
    provenance: Provenance | None = None
    notes: list[str] = Field(default_factory=list, description="Why this plan, or why it cannot run yet.")

    @field_validator("stage_split")
    @classmethod
    def _positive_stages(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(n < 1 for n in value):
            raise ValueError(f"every stage needs at least one block, got {value}")
        return value

    @property
    def world_size(self) -> int:
        return self.degrees.world_size()

    def stages(self, model: ModelPreset) -> list[int]:
        """The stage split, defaulting to :func:`even_split`."""
        return self.stage_split or even_split(model.layers, self.degrees.pipefusion)

    def stage_layers(self, model: ModelPreset) -> list[range]:
        """Block indices of each stage: ``[4, 3]`` → ``[range(0, 4), range(4, 7)]``."""
        out, start = [], 0
        for n in self.stages(model):
            out.append(range(start, start + n))
            start += n
        return out

    def devices(self, cluster: ClusterGraph) -> list[str]:
        return self.placement or cluster.devices[: self.world_size]


def even_split(layers: int, stages: int) -> list[int]:
    """Blocks per stage as even as possible, the larger stages first: (28, 8) → [4,4,4,4,3,3,3,3]."""
    base, extra = divmod(layers, stages)
    return [base + (1 if i < extra else 0) for i in range(stages)]


def patch_rows(rows: int, patches: int) -> list[int]:
    """Token rows of each patch, the larger first: (10, 4) → [3, 3, 2, 2]."""
    return even_split(rows, patches)


def violations(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph | None = None) -> list[str]:
    """Every rule ``plan`` breaks, each as ``field: what is wrong``."""
    out: list[str] = []
    d = plan.degrees
    arch = model.arch
    try:
        rows, cols = model.token_grid(plan.height_px, plan.width_px)
    except InputError as exc:
        out.append(f"height_px/width_px: {exc.message}")
        rows = cols = 0
    for axis in ("ulysses", "tensor"):
        n = getattr(d, axis)
        if arch.heads % n:
            out.append(f"degrees.{axis}: {axis}({n}) does not divide heads({arch.heads})")
    if d.ulysses > 1 and d.tensor > 1 and arch.heads % (d.ulysses * d.tensor):
        out.append(f"degrees: ulysses({d.ulysses}) × tensor({d.tensor}) does not divide heads({arch.heads})")
    if d.cfg > 1 and not model.uses_cfg:
        out.append(f"degrees.cfg: cfg({d.cfg}) needs a model that uses classifier-free guidance; "
                   f"{model.name} does not")
    if d.pipefusion > model.layers:
        out.append(f"degrees.pipefusion: pipefusion({d.pipefusion}) exceeds the model's {model.layers} blocks")
    for axis in ("distrifusion", "tensor"):
        n = getattr(d, axis)
        others = [a for a, m in d.active().items() if a not in (axis, "cfg", "data")]
        if n > 1 and others:
            out.append(f"degrees.{axis}: {axis} combines only with cfg and data, not with {', '.join(others)}")
    if plan.stage_split is not None:
        if len(plan.stage_split) != d.pipefusion:
            out.append(f"stage_split: {len(plan.stage_split)} stages given for pipefusion({d.pipefusion})")
        if sum(plan.stage_split) != model.layers:
            out.append(f"stage_split: sums to {sum(plan.stage_split)}, the model has {model.layers} blocks")
    if rows:
        if plan.patches > rows:
            out.append(f"patches: {plan.patches} patches do not fit {rows} latent token rows")
        if d.distrifusion > rows:
            out.append(f"degrees.distrifusion: {d.distrifusion} patches do not fit {rows} latent token rows")
        sp = d.ulysses * d.ring
        smallest = min(patch_rows(rows, min(plan.patches, rows))) * cols
        if sp > 1 and smallest % sp:
            out.append(f"degrees: ulysses({d.ulysses}) × ring({d.ring}) does not divide the {smallest} "
                       f"tokens of the smallest patch")
    if plan.warmup_steps > plan.steps:
        out.append(f"warmup_steps: {plan.warmup_steps} warm-up steps exceed steps({plan.steps})")
    if plan.placement:
        if len(plan.placement) != plan.world_size:
            out.append(f"placement: {len(plan.placement)} devices for {plan.world_size} ranks "
                       f"({d.label()})")
        repeated = sorted({p for p in plan.placement if plan.placement.count(p) > 1})
        if repeated:
            out.append(f"placement: devices used by several ranks: {', '.join(repeated)}")
    if cluster is not None:
        if plan.world_size > len(cluster.devices):
            out.append(f"degrees: {plan.world_size} ranks ({d.label()}) but the topology has "
                       f"{len(cluster.devices)} devices")
        unknown = [p for p in plan.placement if p not in cluster.device_gpu]
        if unknown:
            out.append(f"placement: unknown devices {', '.join(unknown[:4])}; devices look like "
                       f"{cluster.devices[0]}")
    return out


def validate(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph | None = None,
             *, file: str | None = None) -> None:
    """Raise :class:`PlanError` listing every violation, or return quietly."""
    found = violations(plan, model, cluster)
    if found:
        raise PlanError("; ".join(found), file=file)


SPEC_KEYS = {"patches": "patches", "m": "patches", "warmup": "warmup_steps", "w": "warmup_steps"}


def parse_parallel_spec(spec: str) -> dict[str, Any]:
    """``"pipefusion=8,patches=16,warmup=1"`` → plan fields; unknown keys are an error."""
    degrees: dict[str, int] = {}
    fields: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not value.strip().lstrip("-").isdigit():
            raise InputError(f"expected key=integer, got {item!r}", field="--parallel")
        if key in degrees or SPEC_KEYS.get(key) in fields:
            raise InputError(f"{key!r} is given twice", field="--parallel")
        if key in AXES:
            degrees[key] = int(value)
        elif key in SPEC_KEYS:
            fields[SPEC_KEYS[key]] = int(value)
        elif key == "serial":
            continue
        else:
            raise InputError(f"unknown key {key!r}; keys: {', '.join(AXES + ('patches', 'warmup'))}",
                             field="--parallel")
    fields["degrees"] = degrees
    return fields


def plan_from_spec(model: str, spec: str, *, height_px: int, width_px: int, steps: int,
                   topology: str | None = None, file: str | None = None, field: str = "--parallel") -> ParallelPlan:
    """The plan a ``--parallel`` spec describes; one-line :class:`InputError` naming ``field`` otherwise.

    Stale strategies (PipeFusion stages or patches, DistriFusion) get one warm-up step unless
    the spec says ``warmup``: stale K/V need one full pass first (the search's default too).
    """
    from pydantic import ValidationError

    try:
        fields = parse_parallel_spec(spec)
    except InputError as exc:
        raise InputError(exc.message, file=file, field=field) from None
    degrees = fields["degrees"]
    stale = degrees.get("pipefusion", 1) > 1 or degrees.get("distrifusion", 1) > 1 or fields.get("patches", 1) > 1
    if stale:
        fields.setdefault("warmup_steps", 1)
    try:
        return ParallelPlan(model=model, height_px=height_px, width_px=width_px, steps=steps, topology=topology,
                            **fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}", file=file, field=field) from None


def plan_cluster(plan: ParallelPlan, *, file: str | None = None, override: str | None = None) -> ClusterGraph | None:
    """The topology a plan runs on: ``override`` (a command's --topology), else the plan's own.

    The plan's own relative path is looked up next to the plan file first, then as given (or
    a shipped name); an unknown name or a bad file is reported against the plan's
    ``topology`` field. None when neither names one.
    """
    from pathlib import Path

    from profiles.errors import PfplanError
    from profiles.topology_graph import load_cluster

    if override:
        return load_cluster(override)
    if not plan.topology:
        return None
    name = plan.topology
    if file is not None and not Path(name).is_absolute() and (Path(file).parent / name).is_file():
        name = str(Path(file).parent / name)
    try:
        return load_cluster(name)
    except PfplanError as exc:
        if exc.file:
            raise
        raise InputError(exc.message, file=file, field="topology") from None
