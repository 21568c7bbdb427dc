"""The profile file format (JSON): measured or derived costs of one model on one device.

A profile is what the simulator's profiled cost model reads. It says which model and
device it describes, under which software stack it was measured (predictions drift when
torch, diffusers, the attention kernel or the dtype change, so the loader compares them),
the time of each layer kind for the shapes plans need, link fits per route class and
collective curves, and where all of it came from (the command that produced it, and any
calibration applied afterwards).

A timing is keyed by ``(query_tokens, kv_tokens, batch, tensor_shard)`` exactly as
:class:`profiles.costs.cost_model.LayerShape` is; text tokens are always the model's full count.
A profile made by ``pfplan profile links`` has no model and no layers, only links.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from profiles.formats import FormatModel
from pydantic import ConfigDict, Field, model_validator

from profiles.loading import load_model_file, resolve_shipped

PROFILES_DIR = Path(__file__).parents[1] / "data" / "profiles"


def utc_now() -> str:
    """ISO-8601 UTC timestamp (seconds) for provenance records."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class Timing(FormatModel):
    """Repeated timings of one layer kind for one shape."""

    model_config = ConfigDict(extra="forbid")

    query_tokens: int = Field(ge=0, description="Image tokens whose projections and MLP run.")
    kv_tokens: int = Field(ge=0, description="Image tokens attended over (PipeFusion: the whole image).")
    batch: int = Field(1, ge=1, description="Images per call (2 under classifier-free guidance).")
    tensor_shard: int = Field(1, ge=1, description="Heads and MLP width divided by this (tensor parallel).")
    median_s: float = Field(ge=0, description="Median of the repeats, seconds.")
    p10_s: float = Field(ge=0, description="10th percentile of the repeats, seconds.")
    p90_s: float = Field(ge=0, description="90th percentile of the repeats, seconds.")
    min_s: float = Field(ge=0)
    max_s: float = Field(ge=0)
    repeats: int = Field(ge=1, description="Timed calls (after warm-up); 1 for analytic entries.")

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.query_tokens, self.kv_tokens, self.batch, self.tensor_shard)


class LinkPoint(FormatModel):
    """One message size and the time it took."""

    model_config = ConfigDict(extra="forbid")

    bytes: int = Field(gt=0)
    seconds: float = Field(ge=0, description="Median one-way time (p2p) or completion time (collective).")
    repeats: int = Field(1, ge=1)


class LinkFit(FormatModel):
    """Point-to-point time ≈ latency + bytes / bandwidth, fitted per route class."""

    model_config = ConfigDict(extra="forbid")

    route_class: str = Field(description="NVL / PIX / PXB / PHB / SYS / NET (from the topology).")
    pairs: list[str] = Field(default_factory=list, description="Rank pairs measured, e.g. '0->1'.")
    latency_us: float = Field(ge=0, description="Fitted intercept, µs.")
    bandwidth_gb_s: float = Field(gt=0, description="Fitted 1/slope, GB/s (10^9 B/s) one way.")
    points: list[LinkPoint] = Field(default_factory=list)
    in_loop_extra_us: float = Field(
        0.0, ge=0, description="Extra µs per one-way message when it follows compute on both ranks, beyond the "
        "fit: `pfplan profile links --in-loop`; 0: not measured.")
    in_loop_points: list[LinkPoint] = Field(
        default_factory=list, description="One-way seconds per message when each follows compute on both ranks, "
        "per size (`pfplan profile links --in-loop`); [] when not measured.")
    in_loop_send_cpu_us: float = Field(
        0.0, ge=0, description="µs a one-way message in a stream costs its sender's loop beyond the compute "
        "(posting it, gloo's threads sharing the cores), at the in-loop reference size: `pfplan profile links "
        "--in-loop`; 0: not measured.")
    in_loop_recv_cpu_us: float = Field(
        0.0, ge=0, description="The same for the receiver's loop (its receives posted ahead, the message "
        "already there): part of the in-loop latency (`latency_us` + `in_loop_extra_us`), which a pipeline's next "
        "send can hide, but this cannot.")


class CollectiveCurve(FormatModel):
    """Completion time of one collective versus message size, for one group size."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["all_gather", "all_to_all", "all_reduce"]
    group_size: int = Field(ge=2)
    bytes_meaning: str = Field("bytes of each rank's input tensor", description="What LinkPoint.bytes counts.")
    latency_us: float = Field(ge=0, description="Fitted intercept, µs.")
    bandwidth_gb_s: float = Field(gt=0, description="Fitted bytes-per-rank over time slope, GB/s.")
    points: list[LinkPoint] = Field(default_factory=list)
    in_loop_extra_us: float = Field(
        0.0, ge=0, description="Extra µs per call when each call follows compute on every rank (the ranks arrive "
        "unsynchronised and the backend's threads must wake), beyond the back-to-back points: "
        "`pfplan profile links --in-loop`; 0: not measured.")
    in_loop_points: list[LinkPoint] = Field(
        default_factory=list, description="Seconds per call when each call follows compute on every rank, per "
        "size (`pfplan profile links --in-loop`): what the runtime's calls between blocks cost; where measured, "
        "the simulator uses these in place of the back-to-back points. [] when not measured.")


class VaeTiming(FormatModel):
    """The VAE decode of one image (batch 1) at one resolution to PNG bytes (``vae.decode``, 8-bit
    conversion, PNG encoding, as the runtime does it): what runs once after the loop."""

    model_config = ConfigDict(extra="forbid")

    height_px: int = Field(gt=0)
    width_px: int = Field(gt=0)
    median_s: float = Field(ge=0, description="Median of the repeats, seconds.")
    p10_s: float = Field(ge=0)
    p90_s: float = Field(ge=0)
    repeats: int = Field(ge=1)
    first_s: float | None = Field(None, ge=0, description="The first decode in the process (cold: set-up "
                                  "of the VAE's kernels), seconds; what a one-image run pays.")


class PatchPassOverhead(FormatModel):
    """What the runtime's PipeFusion loop adds around one patch pass (one rank, one stage).

    Measured by ``runtime.strategies.pipefusion`` on one rank with ``patches`` patches and one
    warm-up step, over its patch steps after the first: the loop's time per patch pass, and of
    that the time outside the embed, blocks and final spans (which the simulator prices from
    the layer table) and outside the plain scheduler step the profile times on a patch's rows
    (``scheduler_step``; the runtime's per-patch step costs more, and that excess stays here).
    """

    model_config = ConfigDict(extra="forbid")

    patches: int = Field(ge=2)
    query_tokens: int = Field(gt=0, description="Image tokens of one patch (the largest, when they differ).")
    loop_s: float = Field(ge=0, description="Median over repeats of the patch steps' time per patch pass, seconds.")
    pass_s: float = Field(ge=0, description="max(0, median over repeats of the patch steps' time outside the embed, "
                          "blocks and final spans and the profiled scheduler step of each scheduler span (the span "
                          "itself in profiles from before 2026-12-04 15:28 UTC), per patch pass), seconds.")
    repeats: int = Field(ge=1)


class PassOverhead(FormatModel):
    """What a whole-model forward costs beyond the sum of its separately timed layers.

    ``block_s``: (one full forward of every block, as the runtime calls it) minus (embed +
    Σ timed blocks + final from the ``layers`` table, same shape), divided by the number of
    blocks: the Python between blocks and the cache misses of many distinct weights that
    calling one block in a loop does not see. ``first_pass_s``: the first forward in a fresh
    process minus a warm one (allocator and kernel set-up), paid once per rank per run.
    ``step_s``: the runtime's own loop per step (one rank, serial path) minus the warm
    forward and the scheduler step. ``patch_passes``: the same for the PipeFusion loop, per
    patch pass, at each patch count measured.
    """

    model_config = ConfigDict(extra="forbid")

    batch: int = Field(ge=1)
    query_tokens: int = Field(gt=0, description="Shape of the measured forward (q = kv = the whole image).")
    forward_s: float = Field(ge=0, description="Median full-model forward, seconds.")
    layers_sum_s: float = Field(ge=0, description="embed + Σ blocks + final from the layer timings, seconds.")
    block_s: float = Field(ge=0, description="max(0, median over repeats of (one whole forward − its embed and "
                           "final − each of its blocks re-run warm right after)) / blocks, seconds per block call.")
    first_pass_s: float = Field(ge=0, description="Cold first forward minus the warm median, seconds (0 if not cold).")
    runtime_step_s: float | None = Field(None, ge=0, description="Median step of the runtime's own loop (one rank, "
                                         "serial path) on the same model and shape, seconds.")
    step_s: float | None = Field(None, ge=0, description="max(0, median over repeats of (runtime step − forward "
                                 "timed right after it − scheduler step)): what the runtime's loop adds around each "
                                 "forward, seconds.")
    repeats: int = Field(ge=1)
    patch_passes: list[PatchPassOverhead] = Field(
        default_factory=list, description="The runtime's PipeFusion loop per patch pass, per patch count "
        "(empty: not measured; the simulator then charges each patch pass the serial loop's step_s).")


class RuntimeLaunch(FormatModel):
    """What the runtime itself pays, from fresh one-rank serial launches of pfrun's own worker.

    The layer table and the whole-forward timings run inside the profiler's process; the
    costs paid once per run (the first forward's and the first VAE decode's set-up) depend on
    what that process did before, which the profiler cannot match. So they are taken from
    the runtime's own spans: ``launches`` fresh serial runs (``runtime.run.execute``) of the
    preset at this resolution and step count, medians over launches.
    """

    model_config = ConfigDict(extra="forbid")

    height_px: int = Field(gt=0)
    width_px: int = Field(gt=0)
    steps: int = Field(ge=2)
    batch: int = Field(ge=1, description="2 when the serial loop runs CFG's two branches in one batch.")
    step_s: float = Field(ge=0, description="Median forward span of steps 2..T, seconds.")
    first_step_extra_s: float = Field(ge=0, description="max(0, median over launches of (the first forward span "
                                      "− that launch's median later one)), seconds: the cold set-up a run pays.")
    vae_decode_s: float | None = Field(None, ge=0, description="Median over launches of the run's one VAE decode "
                                       "span, seconds; None when the preset has no VAE.")
    latency_s: float = Field(gt=0, description="Median latency_s of the launches, seconds.")
    setup_s: float | None = Field(None, ge=0, description="Median over launches of the time from the start barrier "
                                  "to the first span (the image's set-up: conditioning inputs, the latent draw), "
                                  "seconds; None in profiles from before 2026-12-04.")
    launches: int = Field(ge=1)
    fresh_process: bool = Field(False, description="True when each launch ran in a new process, as a pfrun "
                                "command's own (profiles from 2026-12-02 19:00 on); False: the one-rank launches ran "
                                "in the profiler's process after its own timings, so their decode was warm.")


class RingAttentionTiming(FormatModel):
    """Ring attention's attention core against one SDPA call, per attention layer, as the runtime runs it.

    The layer table prices a block with torch's SDPA over all keys; pfrun's Ring
    (``runtime/attention/ring.py``) instead calls ``partial_attention`` once per K/V block (a
    matmul, log-sum-exp, exp, matmul) and ``merge`` between them. ``excess_s`` = ``degree`` ×
    partial + (``degree`` − 1) × merge − SDPA over the whole keys, timed on the same shapes
    (heads and head dim of the preset; queries and keys of one rank's share). Where the profile
    also ran the core inside a loop of ``in_loop_ranks`` ranks (:mod:`profiler.ring_loop`: CPU
    profiles with ``--corun-ranks`` at least the degree), ``excess_s`` = ``in_loop_s`` − SDPA:
    the per-call cost of posting the hop and of computing while it is in flight is in it.
    """

    model_config = ConfigDict(extra="forbid")

    degree: int = Field(ge=2)
    batch: int = Field(ge=1)
    query_tokens: int = Field(gt=0, description="One rank's queries (image tokens ÷ degree).")
    kv_tokens: int = Field(gt=0, description="The whole image's keys.")
    partial_s: float = Field(ge=0)
    merge_s: float = Field(ge=0)
    sdpa_s: float = Field(ge=0)
    excess_s: float = Field(description="in_loop_s − sdpa_s where in_loop_s was measured, else "
                            "degree·partial + (degree−1)·merge − sdpa, seconds (may be < 0).")
    repeats: int = Field(ge=1)
    in_loop_s: float | None = Field(None, ge=0, description="One call of the runtime's Ring core outside its hop "
                                    "waits, on in_loop_ranks CPU ranks side by side with compute between calls "
                                    "(the slowest rank's mean), seconds; None where not measured (GPU profiles, "
                                    "degrees above --corun-ranks, profiles from before 2026-12-06).")
    in_loop_ranks: int | None = Field(None, ge=2, description="The ranks of that loop: the degree.")

    @model_validator(mode="after")
    def _loop_fields_together(self) -> "RingAttentionTiming":
        if (self.in_loop_s is None) != (self.in_loop_ranks is None):
            raise ValueError("ring_attention: in_loop_s and in_loop_ranks are set together or not at all")
        if self.in_loop_ranks is not None and self.in_loop_ranks != self.degree:
            raise ValueError(f"ring_attention: in_loop_ranks {self.in_loop_ranks} is not the degree {self.degree}")
        return self


class CoRunTiming(FormatModel):
    """The whole forward on ``ranks`` processes at once against one at a time, on one host.

    Ranks of one machine share its cores' caches, memory bandwidth and (on a VM) the host's
    scheduling, so a forward that takes ``alone_s`` with the other ranks idle takes
    ``together_s`` when all of them run theirs at the same time. Measured by ``pfplan profile
    compute --corun-ranks N`` (:mod:`profiler.corun`): every rank builds the whole model, times
    warm forwards while the others wait at a barrier, then all time them together. GPUs that do
    not share a chip have no entry (factor 1).
    """

    model_config = ConfigDict(extra="forbid")

    ranks: int = Field(ge=2, description="Processes running at once.")
    workload: Literal["forward", "vae_decode"] = Field(
        "forward", description="What was timed: the transformer's whole forward, or the runtime's VAE decode to "
        "PNG (batch 1; its convolutions share the caches and memory bandwidth differently).")
    batch: int = Field(ge=1)
    query_tokens: int = Field(gt=0)
    alone_s: float = Field(gt=0, description="Median warm forward, one rank at a time, seconds.")
    together_s: float = Field(gt=0, description="Median warm forward, every rank at once (its slowest rank), seconds.")
    slowdown: float = Field(gt=0, description="Median over rounds of together ÷ alone (one round: each rank alone "
                            "in turn, then all at once).")
    repeats: int = Field(ge=1)


class SoftwareStack(FormatModel):
    """What the timings depend on besides the hardware (None: not applicable, e.g. analytic)."""

    model_config = ConfigDict(extra="forbid")

    torch: str | None = None
    diffusers: str | None = None
    python: str | None = None
    cuda: str | None = Field(None, description="torch.version.cuda, None on CPU.")
    nccl: str | None = None
    attention_kernel: str | None = Field(None, description="SDPA backend(s) enabled, e.g. 'flash,mem_efficient,math'.")
    dtype: str | None = Field(None, description="fp32 / bf16 / fp16.")
    threads: int | None = Field(None, description="torch intra-op threads.")
    distributed_backend: str | None = Field(None, description="gloo / nccl (link profiles).")


class Calibration(FormatModel):
    """What ``pfplan profile calibrate`` did."""

    model_config = ConfigDict(extra="forbid")

    factor: float = Field(gt=0, description="Every layer time was multiplied by this.")
    measured_serial_s: float = Field(gt=0, description="The measured serial run, seconds.")
    predicted_serial_s: float = Field(gt=0, description="The profile's serial prediction before scaling.")
    resolution_px: int = Field(gt=0)
    steps: int = Field(gt=0)
    batch: int = Field(ge=1, description="2 when the model uses CFG (both branches in one batch).")
    previous_kind: str = Field(description="Provenance kind of the profile before calibration.")
    source: str = Field("", description="Where the measured figure comes from (a run, a publication).")
    command: str
    created_at: str


class ProfileProvenance(FormatModel):
    """Where the numbers came from."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["measured", "analytic", "calibrated"]
    command: str = Field(description="The command line that produced this file.")
    created_at: str = Field(default_factory=utc_now)
    host: str | None = None
    analytic: dict[str, float] | None = Field(
        None, description="Roofline efficiency constants used (analytic profiles).")
    calibration: Calibration | None = None
    notes: list[str] = Field(default_factory=list)


class Profile(FormatModel):
    """One model on one device (or, for link profiles, one set of ranks)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    model: str | None = Field(None, description="Model preset name; None for a links-only profile.")
    model_family: str | None = None
    device: str = Field(description="GPU catalog name (pfplan gpus), e.g. 'cpu', 'h100-sxm'.")
    device_name: str = Field(description="What the device calls itself (CPU model / CUDA device name).")
    software: SoftwareStack = Field(default_factory=SoftwareStack)
    text_tokens: int | None = Field(None, description="Text tokens the timed layers attended to.")
    layers: dict[str, list[Timing]] = Field(default_factory=dict, description="Layer kind → timings.")
    vae_decode: list[VaeTiming] = Field(
        default_factory=list, description="VAE decode per resolution (optional; absent: not priced).")
    scheduler_step: list[Timing] = Field(
        default_factory=list, description="The preset's diffusers scheduler step on a latent of query_tokens "
        "image tokens' rows (kv_tokens = query_tokens, batch 1); optional.")
    pass_overhead: list[PassOverhead] = Field(
        default_factory=list, description="Whole-forward overhead beyond the timed layers, per batch; optional.")
    corun: list[CoRunTiming] = Field(
        default_factory=list, description="Forward slowdown when several ranks share this host; optional.")
    runtime_launch: list[RuntimeLaunch] = Field(
        default_factory=list, description="Once-per-run costs from the runtime's own serial launches; optional.")
    ring_attention: list[RingAttentionTiming] = Field(
        default_factory=list, description="Ring attention's core against one SDPA call, per degree and batch; optional.")
    links: list[LinkFit] = Field(default_factory=list)
    collectives: list[CollectiveCurve] = Field(default_factory=list)
    provenance: ProfileProvenance

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if self.layers and not self.model:
            raise ValueError("a profile with layer timings must name its model")
        for kind, timings in self.layers.items():
            keys = [t.key for t in timings]
            if len(set(keys)) != len(keys):
                raise ValueError(f"layers.{kind}: a (query, kv, batch, tensor_shard) shape repeats")
        return self


def profile_path(name_or_path: str | Path) -> Path:
    """A profile file, or a shipped profile by name (``pixart-tiny-cpu``)."""
    return resolve_shipped(str(name_or_path), PROFILES_DIR, "profile", suffixes=(".json",))


def load_profile(name_or_path: str | Path) -> Profile:
    return load_model_file(Profile, profile_path(name_or_path))


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.json"))
