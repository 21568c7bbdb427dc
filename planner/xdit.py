"""A plan as an xDiT command line, and an xDiT command line as a plan.

Why here: a user who picked a plan with pfplan may want to run it on xDiT
(https://github.com/xdit-project/xDiT), the engine PipeFusion comes from, and a user with a
tuned xDiT command may want pfplan's prediction of it. Both directions are pure text
translations, so they sit in the planner and need no torch.

What xDiT's source says (``xfuser/config/args.py``, ``xfuser/config/config.py``):

- every degree is a flag of ``xFuserArgs``; each strategy names its own in ``xdit_flag``
  (:class:`simulator.strategies.base.Strategy`), and a flag not ending in ``_degree`` is a
  switch meaning the strategy's ``max_degree`` (``--use_cfg_parallel``: ``cfg_degree = 2``).
  Strategies xDiT lacks (DiTFastAttn aside, it dropped DistriFusion) have None and the
  export refuses their plans;
- ``--num_pipeline_patch`` defaults to the PipeFusion degree, ``--warmup_steps`` to 1 (read
  by PipeFusion only), ``--attn_layer_num_for_pp`` (blocks per stage, one number per stage)
  to a ``ceil(L/N)`` split; ``--height``/``--width`` to 1024, ``--num_inference_steps`` to 20;
- the product of the degrees must equal the world size (``ParallelConfig``), and ranks are
  laid out ``tp-sp-pp-cfg-dp`` from the inside out (``RankGenerator``), ulysses inside ring:
  the same nesting as our rank order, so rank ``i`` of the plan's placement is torchrun's
  rank ``i``;
- FlexibleArgumentParser accepts ``-`` for ``_`` in flag names; so does the import.

The example script is chosen by the diffusers pipeline class the family's spec names
(:data:`EXAMPLES`); DiT (``DiTPipeline``) has no xDiT pipeline, so its plans are refused.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from profiles.catalog.models import ModelPreset
from profiles.errors import InputError
from simulator.degree_rules import needs_warmup
from simulator.plan import ParallelPlan
from simulator.strategies import STRATEGIES, Registry
from simulator.strategies.base import Strategy

EXAMPLES: dict[str, str] = {
    "PixArtAlphaPipeline": "examples/pixartalpha_example.py",
    "PixArtSigmaPipeline": "examples/pixartsigma_example.py",
    "StableDiffusion3Pipeline": "examples/sd3_example.py",
    "FluxPipeline": "examples/flux_example.py",
    "HunyuanDiTPipeline": "examples/hunyuandit_example.py",
}
"""diffusers pipeline class → the xDiT example script that runs it (xDiT's ``examples/run.sh``)."""

CHECKPOINTS: dict[str, str] = {
    "pixart-alpha": "PixArt-alpha/PixArt-XL-2-1024-MS",
    "sd3-medium": "stabilityai/stable-diffusion-3-medium-diffusers",
    "flux-dev": "black-forest-labs/FLUX.1-dev",
    "hunyuan-dit": "Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers",
    "dit-xl-2": "facebook/DiT-XL-2-256",
}
"""Shipped preset → the Hugging Face checkpoint xDiT's ``--model`` loads."""

XDIT_DEFAULTS = {"height": 1024, "width": 1024, "num_inference_steps": 20, "warmup_steps": 1}
"""xFuserArgs' defaults for the flags the import reads."""

IGNORED_FLAGS: dict[str, dict[str, Any]] = {
    "--prompt": {"nargs": "*"}, "--negative_prompt": {"nargs": "*"}, "--seed": {}, "--output_type": {},
    "--guidance_scale": {}, "--max_sequence_length": {}, "--no_use_resolution_binning": {"action": "store_true"},
    "--use_parallel_vae": {"action": "store_true"}, "--use_torch_compile": {"action": "store_true"},
    "--use_onediff": {"action": "store_true"}, "--enable_tiling": {"action": "store_true"},
    "--enable_slicing": {"action": "store_true"},
}
"""xDiT flags that change neither the plan's layout nor its size: accepted and ignored."""

TORCHRUN_FLAGS = {"--nproc_per_node": int, "--nnodes": int, "--node_rank": int, "--master_addr": str,
                  "--master_port": int, "--standalone": None, "--rdzv_backend": str, "--rdzv_endpoint": str,
                  "--rdzv_id": str}
"""torchrun options the import understands (``None``: a switch)."""


def is_switch(flag: str) -> bool:
    """``--use_cfg_parallel`` is a switch; ``--ulysses_degree N`` takes the degree."""
    return not flag.endswith("_degree")


def flagged(strategies: Registry) -> list[Strategy]:
    """The strategies with an xDiT flag, in rank order."""
    return [s for s in strategies if s.xdit_flag]


@dataclass(frozen=True)
class XditCommand:
    """One xDiT launch: environment, torchrun options, the example script and its flags."""

    env: dict[str, str]
    torchrun: list[str]
    script: str
    args: list[str]
    notes: list[str] = field(default_factory=list)
    """What the user should know (the checkpoint is not on the Hub, hosts to start it on)."""

    def argv(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.env.items()] + ["torchrun", *self.torchrun, self.script, *self.args]

    def line(self) -> str:
        return shlex.join(self.argv())


def checkpoint(plan: ParallelPlan, model: ModelPreset) -> tuple[str, list[str]]:
    """xDiT's ``--model``: a local diffusers folder as given, a preset's Hub id, else the name with a note."""
    if Path(plan.model).is_dir():
        return plan.model, []
    if model.name in CHECKPOINTS:
        return CHECKPOINTS[model.name], []
    return plan.model, [f"--model {plan.model}: {model.name} has no Hugging Face checkpoint "
                        "(random-weight test preset); pass a diffusers folder to xDiT instead"]


def launcher(plan: ParallelPlan) -> tuple[dict[str, str], list[str], list[str]]:
    """(environment, torchrun options, notes) that put rank ``i`` on ``plan.placement[i]``."""
    n = plan.world_size
    if not plan.placement:
        return {}, [f"--nproc_per_node={n}"], []
    hosts = [d.split("/")[0] for d in plan.placement]
    order = list(dict.fromkeys(hosts))
    per_host = n // len(order)
    if any(hosts[i] != order[i // per_host] for i in range(n)) or per_host * len(order) != n:
        raise InputError(f"ranks are not laid out host by host in equal numbers ({', '.join(plan.placement)}); "
                         "torchrun numbers ranks node by node", field="placement")
    local = [d.split("/", 1)[-1] for d in plan.placement[:per_host]]
    env: dict[str, str] = {}
    if all(name.startswith("gpu") and name[3:].isdigit() for name in local) and \
            [int(name[3:]) for name in local] != list(range(per_host)):
        env["CUDA_VISIBLE_DEVICES"] = ",".join(name[3:] for name in local)
    if len(order) == 1:
        return env, [f"--nproc_per_node={per_host}"], []
    return env, [f"--nnodes={len(order)}", f"--nproc_per_node={per_host}"], [
        f"start it on each of {', '.join(order)} with --node_rank and --master_addr (hosts in that order)"]


def xdit_stage_split(layers: int, stages: int) -> list[int]:
    """The blocks per stage xDiT cuts without ``--attn_layer_num_for_pp``: ceil(L/N) each, in order,
    so the last stages get what is left (Flux's 57 blocks on 8 stages: [8]*7 + [1]; PixArt's 28: [4]*7 + [0]).

    Read from xDiT's ``_split_transformer_blocks`` (base_transformer.py), which counts Flux's joint and
    single-stream blocks as one list; a stage may be left empty, which pfplan's plans do not allow.
    """
    per_stage = -(-layers // stages)
    return [max(0, min(per_stage, layers - i * per_stage)) for i in range(stages)]


def to_xdit(plan: ParallelPlan, model: ModelPreset, *, strategies: Registry = STRATEGIES) -> XditCommand:
    """The xDiT command that runs ``plan``; a one-line :class:`InputError` for what xDiT cannot run."""
    pipeline_class = model.spec.pipeline_class
    if pipeline_class not in EXAMPLES:
        raise InputError(f"xDiT has no pipeline for {pipeline_class} ({model.name}); it runs "
                         f"{', '.join(EXAMPLES)}", field="model")
    degrees = plan.degrees.as_dict()
    active = strategies.active(degrees)
    missing = [f"{s.axis}={n}" for s, n in active if not s.xdit_flag]
    if missing:
        raise InputError(f"xDiT has no equivalent of {', '.join(missing)} "
                         f"({', '.join(s.title for s, _ in active if not s.xdit_flag)}); it runs "
                         f"{', '.join(s.axis for s in flagged(strategies))}", field="degrees")
    model_arg, notes = checkpoint(plan, model)
    env, torchrun, host_notes = launcher(plan)
    args = ["--model", model_arg, "--height", str(plan.height_px), "--width", str(plan.width_px),
            "--num_inference_steps", str(plan.steps)]
    for strategy, n in active:
        flag = strategy.xdit_flag or ""
        args += [flag] if is_switch(flag) else [flag, str(n)]
    pipeline = strategies.pipeline
    stages = degrees.get(pipeline.axis or "", 1)
    if stages > 1:
        args += ["--num_pipeline_patch", str(plan.patches), "--attn_layer_num_for_pp",
                 *map(str, plan.stages(model))]
    if needs_warmup(degrees, plan.patches_in_effect, strategies=strategies):
        args += ["--warmup_steps", str(plan.warmup_steps)]
    args.append("--no_use_resolution_binning")
    return XditCommand(env, torchrun, EXAMPLES[pipeline_class], args, notes + host_notes)


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line :class:`InputError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise InputError(message, field="--from xdit")


def normalise(token: str) -> str:
    """``--ulysses-degree=2`` → ``--ulysses_degree=2`` (xDiT's FlexibleArgumentParser does the same)."""
    if not token.startswith("--"):
        return token
    key, sep, value = token.partition("=")
    return "--" + key[2:].replace("-", "_") + sep + value


def refuse(message: str) -> NoReturn:
    raise InputError(message, field="--from xdit")


def check_repeats(tokens: list[str], known: set[str]) -> None:
    seen: set[str] = set()
    for token in tokens:
        key = token.partition("=")[0]
        if key in known:
            if key in seen:
                refuse(f"{key} is given twice")
            seen.add(key)


def split_launch(tokens: list[str]) -> tuple[list[str], str | None, list[str]]:
    """(torchrun options, script, script flags) of ``[ENV=…] [torchrun OPTS] [python] [SCRIPT] FLAGS``."""
    while tokens and "=" in tokens[0] and not tokens[0].startswith("-"):
        tokens = tokens[1:]  # environment assignments (CUDA_VISIBLE_DEVICES=…): the placement is pfplan's
    torchrun: list[str] = []
    if tokens and Path(tokens[0]).name == "torchrun":
        tokens = tokens[1:]
        while tokens and tokens[0].startswith("-"):
            token = normalise(tokens[0])
            kind = TORCHRUN_FLAGS.get(token.partition("=")[0], False)
            if kind is False:
                refuse(f"unknown torchrun option {tokens[0]}; pfplan reads {', '.join(TORCHRUN_FLAGS)}")
            takes_value = kind is not None and "=" not in token
            torchrun += [token] + ([tokens[1]] if takes_value and len(tokens) > 1 else [])
            tokens = tokens[2:] if takes_value else tokens[1:]
    elif tokens and Path(tokens[0]).name.startswith("python"):
        tokens = tokens[1:]
    script = None
    if tokens and not tokens[0].startswith("-"):
        script, tokens = tokens[0], tokens[1:]
    return torchrun, script, [normalise(t) for t in tokens]


def from_xdit(line: str, model: ModelPreset, *, strategies: Registry = STRATEGIES) -> tuple[dict[str, Any], list[str]]:
    """The plan fields an xDiT command line asks for, and notes on what was ignored.

    ``line`` is the script's flags alone or a whole ``torchrun … script.py …`` line (what
    :func:`to_xdit` prints). Unknown or contradicting flags are refused in one line.
    """
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        refuse(f"cannot split the command line: {exc}")
    torchrun, script, flags = split_launch(tokens)
    launch = _Parser(prog="torchrun", add_help=False, allow_abbrev=False)
    for name, kind in TORCHRUN_FLAGS.items():
        launch.add_argument(name, **({"action": "store_true"} if kind is None else {"type": kind}))
    world = launch.parse_args(torchrun)

    parser = _Parser(prog="xdit", add_help=False, allow_abbrev=False)
    parser.add_argument("--model")
    for name in ("--height", "--width", "--num_inference_steps", "--warmup_steps", "--num_pipeline_patch"):
        parser.add_argument(name, type=int)
    parser.add_argument("--attn_layer_num_for_pp", type=int, nargs="*")
    by_flag = {s.xdit_flag: s for s in flagged(strategies)}
    for flag in by_flag:
        parser.add_argument(flag, **({"action": "store_true"} if is_switch(flag or "") else {"type": int}))
    for name, options in IGNORED_FLAGS.items():
        parser.add_argument(name, **options)
    known = {a for action in parser._actions for a in action.option_strings}
    unknown = [t.partition("=")[0] for t in flags if t.startswith("--") and t.partition("=")[0] not in known]
    if unknown:
        refuse(f"unknown or unsupported xDiT flag {unknown[0]}; pfplan imports "
               f"{', '.join(sorted(known - set(IGNORED_FLAGS)))} (and ignores {', '.join(IGNORED_FLAGS)})")
    check_repeats(flags, known)
    args = parser.parse_args(flags)

    notes: list[str] = []
    pipeline_class = model.spec.pipeline_class
    if script is not None:
        owner = next((cls for cls, path in EXAMPLES.items() if Path(path).name == Path(script).name), None)
        if owner is not None and owner != pipeline_class:
            refuse(f"{script} runs {owner}, but {model.name} is a {pipeline_class}")
    if args.model is not None:
        named = next((name for name, hub in CHECKPOINTS.items() if args.model in (name, hub)), None)
        if named is not None and named != model.name:
            refuse(f"--model {args.model} is {named}, but --model {model.name} was given to pfplan")

    degrees: dict[str, int] = {}
    for flag, strategy in by_flag.items():
        value = getattr(args, (flag or "").lstrip("-"))
        if is_switch(flag or ""):
            if value:
                degrees[strategy.axis or ""] = strategy.max_degree or 2
        elif value is not None:
            degrees[strategy.axis or ""] = value
    pipeline_axis = strategies.pipeline.axis or ""
    stages = degrees.get(pipeline_axis, 1)
    if stages <= 1 and args.num_pipeline_patch is not None and args.num_pipeline_patch != 1:
        refuse(f"--num_pipeline_patch {args.num_pipeline_patch} without {strategies.pipeline.xdit_flag} > 1 "
               "(xDiT would ignore it)")
    if args.attn_layer_num_for_pp is not None and len(args.attn_layer_num_for_pp) != stages:
        refuse(f"--attn_layer_num_for_pp gives {len(args.attn_layer_num_for_pp)} stages for "
               f"{strategies.pipeline.xdit_flag} {stages}")
    world_size = 1
    for n in degrees.values():
        world_size *= n
    if world.nproc_per_node is not None:
        launched = world.nproc_per_node * (world.nnodes or 1)
        if launched != world_size:
            refuse(f"torchrun starts {launched} processes but the degrees multiply to {world_size} "
                   "(xDiT needs them equal)")
    patches = (args.num_pipeline_patch or stages) if stages > 1 else 1
    fields: dict[str, Any] = {
        "degrees": {axis: n for axis, n in degrees.items() if n != 1},
        "patches": patches,
        "height_px": args.height or XDIT_DEFAULTS["height"],
        "width_px": args.width or XDIT_DEFAULTS["width"],
        "steps": args.num_inference_steps or XDIT_DEFAULTS["num_inference_steps"],
        "stage_split": list(args.attn_layer_num_for_pp) if args.attn_layer_num_for_pp else None,
    }
    if stages > 1 and args.attn_layer_num_for_pp is None:
        default = xdit_stage_split(model.layers, stages)
        if 0 in default:
            notes.append(f"no --attn_layer_num_for_pp: xDiT would cut {default} blocks per stage, leaving a stage "
                         "empty, which a pfplan plan cannot hold; the stage split is pfplan's balanced one")
        else:
            fields["stage_split"] = default
            notes.append(f"no --attn_layer_num_for_pp: the stage split is xDiT's own, ceil(L/N) blocks per stage "
                         f"({default})")
    warmup = args.warmup_steps if args.warmup_steps is not None else XDIT_DEFAULTS["warmup_steps"]
    if needs_warmup(degrees, patches, strategies=strategies):
        fields["warmup_steps"] = warmup
    else:
        fields["warmup_steps"] = 0
        if args.warmup_steps:
            notes.append(f"--warmup_steps {args.warmup_steps} ignored: only PipeFusion reads it")
    ignored = sorted({t.partition("=")[0] for t in flags if t.partition("=")[0] in IGNORED_FLAGS}
                     - {"--no_use_resolution_binning"})  # the export writes it: pfplan's sizes are exact
    if ignored:
        notes.append(f"ignored (no effect on the plan): {', '.join(ignored)}")
    return fields, notes
