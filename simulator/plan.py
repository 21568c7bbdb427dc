"""The parallel plan: the contract between the planner, the simulator and the runtime.

One pydantic model says how to run one image generation: the parallel degrees, PipeFusion's
patches, warm-up and stage split, and which topology device each rank runs on. One
:func:`validate` checks every rule against the model and the cluster and reports *all*
violations in one message, each naming its field.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from math import prod

from profiles.formats import FormatModel
from pydantic import ConfigDict, Field, create_model, field_validator

from profiles.errors import InputError
from profiles.catalog.models import ModelPreset
from profiles.topology.graph import ClusterGraph
from simulator.degree_rules import axis_violations, combination_violations, needs_warmup, sequence_violations
from simulator.errors import PlanError
from simulator.limits import size_violations
from simulator.rank_groups import AXES
from simulator.strategies import STRATEGIES, Registry
from simulator.strategies.base import PlanFacts

TOOL_VERSION = "0.1.0"


class DegreesBase(FormatModel):
    """What every ``Degrees`` model can do; the fields come from the strategies (:func:`degrees_model`)."""

    model_config = ConfigDict(extra="forbid")

    def as_dict(self) -> dict[str, int]:
        """Every axis' degree, in rank order."""
        return {axis: getattr(self, axis) for axis in type(self).model_fields}

    def world_size(self) -> int:
        return prod(self.as_dict().values())

    def active(self) -> dict[str, int]:
        return {axis: n for axis, n in self.as_dict().items() if n > 1}

    def label(self) -> str:
        """``cfg2×pipefusion4`` (``serial`` when nothing is parallel)."""
        return "×".join(f"{axis}{n}" for axis, n in self.active().items()) or "serial"

    @property
    def pipeline_stages(self) -> int:
        """The pipeline axis' degree: how many stages the blocks are cut into."""
        return getattr(self, STRATEGIES.pipeline.axis)  # type: ignore[arg-type]

    def images_per_generation(self) -> int:
        """Images one generation makes (data replicas each make one)."""
        return prod(s.images_per_generation(n) for s, n in STRATEGIES.active(self.as_dict()))


def degrees_model(strategies: Registry = STRATEGIES) -> type[DegreesBase]:
    """The pydantic model of the parallel degrees: one ``int`` field per axis, in rank order, default 1."""
    fields: dict[str, Any] = {
        s.axis: (int, Field(1, ge=1, le=s.max_degree, description=s.description))
        for s in strategies if s.axis}
    return create_model("Degrees", __base__=DegreesBase,  # type: ignore[call-overload]
                        __doc__="Parallel degrees; their product is the number of ranks. 1 means disabled.",
                        __module__=__name__, **fields)


Degrees = degrees_model()
"""The degrees every plan file holds (``data, cfg, pipefusion, …``; see :func:`degrees_model`)."""


class Prediction(FormatModel):
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


class Provenance(FormatModel):
    """Where a plan came from, so a user can reproduce it."""

    model_config = ConfigDict(extra="forbid")

    tool_version: str = TOOL_VERSION
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    command: str = ""
    topology: str | None = None
    topology_sha256: str | None = None
    profile: str | None = None
    profile_sha256: str | None = None


class ParallelPlan(FormatModel):
    """How to run one generation of ``model`` on a cluster."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    model: str = Field(description="Preset name, preset file or diffusers config path.")
    height_px: int = Field(gt=0)
    width_px: int = Field(gt=0)
    steps: int = Field(gt=0, description="Diffusion steps T.")
    frames: int | None = Field(None, gt=0, description="Video frames of one generation (1 + a multiple of the VAE's "
                               "temporal factor); None: the model's default (1 for images).")
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

    @property
    def pipelined(self) -> bool:
        """True when the blocks are cut into stages or the latent into patches."""
        return self.degrees.pipeline_stages > 1 or self.patches > 1

    @property
    def patches_in_effect(self) -> int:
        """The patches the schedule runs: ``patches`` with a pipeline, 1 (the whole image) without."""
        return self.patches if self.degrees.pipeline_stages > 1 else 1

    def stages(self, model: ModelPreset) -> list[int]:
        """The stage split, defaulting to :func:`even_split`."""
        return self.stage_split or even_split(model.layers, self.degrees.pipeline_stages)

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


def plan_preset(plan: ParallelPlan, model: ModelPreset) -> ModelPreset:
    """``model`` generating the plan's ``frames`` (unchanged when the plan names none); an
    :class:`InputError` on ``frames`` when the model cannot make that many."""
    return model.with_frames(plan.frames)


def plan_facts(plan: ParallelPlan, model: ModelPreset) -> PlanFacts:
    """What the strategies' rules read of ``plan`` (rows and cols 0 when the resolution is invalid)."""
    try:
        rows, cols = plan_preset(plan, model).token_grid(plan.height_px, plan.width_px)
    except InputError:
        rows = cols = 0
    return PlanFacts(plan.degrees.as_dict(), plan.patches, plan.warmup_steps, plan.steps, rows, cols,
                     plan.pipelined)


def violations(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph | None = None, *,
               strategies: Registry = STRATEGIES) -> list[str]:
    """Every rule ``plan`` breaks, each as ``field: what is wrong`` (``strategies``: whose rules)."""
    out: list[str] = []
    d = plan.degrees
    degrees = d.as_dict()
    try:
        model = plan_preset(plan, model)
    except InputError as exc:
        out.append(f"frames: {exc.message}")
    try:
        rows, cols = model.token_grid(plan.height_px, plan.width_px)
    except InputError as exc:
        out.append(f"height_px/width_px: {exc.message}")
        rows = cols = 0
    for axis, n in degrees.items():
        out += axis_violations(axis, n, model, rows, strategies=strategies)
    out += combination_violations(degrees, model, strategies=strategies)
    pipeline = strategies.pipeline.axis
    if plan.stage_split is not None:
        if len(plan.stage_split) != d.pipeline_stages:
            out.append(f"stage_split: {len(plan.stage_split)} stages given for {pipeline}({d.pipeline_stages})")
        if sum(plan.stage_split) != model.layers:
            out.append(f"stage_split: sums to {sum(plan.stage_split)}, the model has {model.layers} blocks")
    if rows:
        if plan.patches > rows:
            out.append(f"patches: {plan.patches} patches do not fit {rows} latent token rows")
        smallest = min(patch_rows(rows, min(plan.patches, rows))) * cols
        out += sequence_violations(degrees, smallest, strategies=strategies)
    out += size_violations(plan.height_px, plan.width_px, plan.steps)
    if plan.warmup_steps > plan.steps:
        out.append(f"warmup_steps: {plan.warmup_steps} warm-up steps exceed steps({plan.steps})")
    if plan.placement:
        if len(plan.placement) != plan.world_size:
            out.append(f"placement: {len(plan.placement)} devices for {plan.world_size} ranks "
                       f"({d.label()})")
        seen: set[str] = set()
        repeated = sorted({p for p in plan.placement if p in seen or seen.add(p)})
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

    Stale strategies (a pipeline with stages or patches, stale K/V) get one warm-up step unless
    the spec says ``warmup``: stale K/V need one full pass first (the search's default too).
    """
    from pydantic import ValidationError

    try:
        fields = parse_parallel_spec(spec)
    except InputError as exc:
        raise InputError(exc.message, file=file, field=field) from None
    degrees = fields["degrees"]
    if needs_warmup(degrees, fields.get("patches", 1)):
        fields.setdefault("warmup_steps", 1)
    try:
        return ParallelPlan(model=model, height_px=height_px, width_px=width_px, steps=steps, topology=topology,
                            **fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}", file=file, field=field) from None


def plan_cluster(plan: ParallelPlan, *, file: str | None = None, override: str | None = None) -> ClusterGraph | None:
    """The topology a plan runs on: ``override`` (a command's --topology), else the plan's own.

    A plan read by :func:`simulator.plan_files.load_plan` already holds its paths resolved by
    the one rule (relative to the plan file); for a plan built in code, a relative path is
    looked up next to ``file`` first, then as given (or a shipped name). An unknown name or a
    bad file is reported against the plan's ``topology`` field. None when neither names one.
    """
    from pathlib import Path

    from profiles.errors import PfplanError
    from profiles.topology.graph import load_cluster

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
