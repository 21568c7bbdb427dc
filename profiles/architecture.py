"""What a DiT family's diffusers config implies: dimensions, block kinds, parameter counts.

The planner needs parameter bytes per pipeline stage and the simulator needs the shape of
every block, without importing torch or diffusers. So each family reads its diffusers
config here and counts parameters from the dimensions with closed forms that mirror the
diffusers modules one by one (``tests/profiles/test_architecture.py`` checks them against
models built on the meta device).

Notation in the formulas: ``h`` hidden size, ``d`` head dim, ``f`` feed-forward inner
width, ``c`` text (cross-attention) width, ``p`` patch size, ``lin(a, b) = a·b + b``
(a linear layer with bias).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from profiles.errors import InputError

Family = Literal["pixart", "sd3", "flux", "dit", "hunyuan"]
AttentionKind = Literal["cross", "joint", "self"]

DIFFUSERS_CLASSES: dict[str, str] = {
    "pixart": "PixArtTransformer2DModel",
    "sd3": "SD3Transformer2DModel",
    "flux": "FluxTransformer2DModel",
    "dit": "DiTTransformer2DModel",
    "hunyuan": "HunyuanDiT2DModel",
}


def lin(a: int, b: int) -> int:
    """Parameters of ``nn.Linear(a, b)`` with bias."""
    return a * b + b


@dataclass(frozen=True)
class BlockGroup:
    """``count`` consecutive transformer blocks of one kind, in model order."""

    kind: str
    count: int
    params: int


@dataclass(frozen=True)
class Architecture:
    """Dimensions and parameter counts of one transformer, derived from its config."""

    family: Family
    hidden_size: int
    heads: int
    head_dim: int
    ffn_inner: int
    patch_size: int
    """Latent pixels per token side (Flux packs 2×2 latents into one token: 2)."""
    latent_channels: int
    attention: AttentionKind
    text_width: int
    """Width of the text tokens the attention layers see (0 for class-conditioned DiT)."""
    blocks: tuple[BlockGroup, ...]
    embed_params: int
    """Patch / text / timestep embeddings and other parameters outside the blocks (stage 0)."""
    final_params: int
    """Output norm and projection (last stage)."""
    duplicated_params: int = 0
    """Parameters diffusers stores once per block but the original model shares (DiT)."""

    @property
    def layers(self) -> int:
        return sum(group.count for group in self.blocks)

    @property
    def block_params(self) -> int:
        return sum(group.count * group.params for group in self.blocks)

    @property
    def params(self) -> int:
        return self.embed_params + self.block_params + self.final_params

    def block_kinds(self) -> list[str]:
        """The kind of every block, in model order (index = layer number)."""
        return [group.kind for group in self.blocks for _ in range(group.count)]

    def layer_params(self) -> list[int]:
        return [group.params for group in self.blocks for _ in range(group.count)]


def _require(config: dict[str, Any], key: str, family: str) -> Any:
    if config.get(key) is None:
        raise InputError(f"the {family} config has no {key!r} (a positive integer)", field=f"config.{key}")
    return config[key]


def _ada_zero(h: int) -> int:
    return lin(h, 6 * h)


def _timestep_embedding(h: int) -> int:
    return lin(256, h) + lin(h, h)


def _pixart(cfg: dict[str, Any]) -> Architecture:
    heads, d = _require(cfg, "num_attention_heads", "pixart"), _require(cfg, "attention_head_dim", "pixart")
    h = heads * d
    p, cin = cfg.get("patch_size", 2), cfg.get("in_channels", 4)
    cout = cfg.get("out_channels") or cin
    c = cfg.get("cross_attention_dim") or h
    caption = cfg.get("caption_channels", 4096)
    f = 4 * h
    block = 4 * lin(h, h) + (lin(h, h) + 2 * lin(c, h) + lin(h, h)) + lin(h, f) + lin(f, h) + 6 * h
    embed = (cin * p * p * h + h) + (lin(256, h) + lin(h, h) + lin(h, 6 * h)) + lin(caption, h) + lin(h, h)
    extra = cfg.get("use_additional_conditions")
    if extra or (extra is None and cfg.get("sample_size") == 128):
        embed += 2 * (lin(256, h // 3) + lin(h // 3, h // 3))
    final = lin(h, p * p * cout) + 2 * h
    return Architecture("pixart", h, heads, d, f, p, cin, "cross", c,
                        (BlockGroup("pixart_block", _require(cfg, "num_layers", "pixart"), block),),
                        embed, final)


def _joint_block(h: int, d: int, *, qk_norm: bool, last: bool) -> int:
    """An SD3 / Flux double-stream block: two AdaLN-Zero, joint attention, two MLPs."""
    ff = lin(h, 4 * h) + lin(4 * h, h)
    norm_context = lin(h, 2 * h) if last else _ada_zero(h)
    attention = 7 * lin(h, h) + (0 if last else lin(h, h))
    return _ada_zero(h) + norm_context + attention + (4 * d if qk_norm else 0) + ff + (0 if last else ff)


def _sd3(cfg: dict[str, Any]) -> Architecture:
    heads, d = _require(cfg, "num_attention_heads", "sd3"), _require(cfg, "attention_head_dim", "sd3")
    h = heads * d
    layers = _require(cfg, "num_layers", "sd3")
    p, cin = cfg.get("patch_size", 2), cfg.get("in_channels", 16)
    cout = cfg.get("out_channels") or cin
    qk = cfg.get("qk_norm") is not None
    if cfg.get("dual_attention_layers"):
        raise InputError("SD3.5 dual-attention layers are not modelled", field="config.dual_attention_layers")
    caption_dim = cfg.get("caption_projection_dim", h)
    embed = (cin * p * p * h + h) + _timestep_embedding(h) + lin(cfg.get("pooled_projection_dim", 2048), h) \
        + lin(h, h) + lin(cfg.get("joint_attention_dim", 4096), caption_dim)
    final = lin(h, 2 * h) + lin(h, p * p * cout)
    blocks = (BlockGroup("sd3_joint_block", layers - 1, _joint_block(h, d, qk_norm=qk, last=False)),
              BlockGroup("sd3_joint_block_last", 1, _joint_block(h, d, qk_norm=qk, last=True)))
    return Architecture("sd3", h, heads, d, 4 * h, p, cin, "joint", caption_dim, blocks, embed, final)


def _flux(cfg: dict[str, Any]) -> Architecture:
    heads, d = _require(cfg, "num_attention_heads", "flux"), _require(cfg, "attention_head_dim", "flux")
    h = heads * d
    cin = cfg.get("in_channels", 64)
    cout = cfg.get("out_channels") or cin
    packed = cfg.get("patch_size", 1)
    single = lin(h, 3 * h) + lin(h, 4 * h) + 3 * lin(h, h) + 2 * d + lin(5 * h, h)
    pooled = cfg.get("pooled_projection_dim", 768)
    guidance = _timestep_embedding(h) if cfg.get("guidance_embeds", False) else 0
    embed = _timestep_embedding(h) + guidance + lin(pooled, h) + lin(h, h) \
        + lin(cfg.get("joint_attention_dim", 4096), h) + lin(cin, h)
    final = lin(h, 2 * h) + lin(h, packed * packed * cout)
    blocks = (BlockGroup("flux_double_block", _require(cfg, "num_layers", "flux"),
                         _joint_block(h, d, qk_norm=True, last=False)),
              BlockGroup("flux_single_block", _require(cfg, "num_single_layers", "flux"), single))
    # 2×2 latent patches are packed into one token of in_channels = 4 × latent channels.
    return Architecture("flux", h, heads, d, 4 * h, 2 * packed, cin // 4, "joint", h, blocks, embed, final)


def _dit(cfg: dict[str, Any]) -> Architecture:
    heads, d = _require(cfg, "num_attention_heads", "dit"), _require(cfg, "attention_head_dim", "dit")
    h = heads * d
    p, cin = cfg.get("patch_size", 2), cfg.get("in_channels", 4)
    cout = cfg.get("out_channels") or cin
    classes = cfg.get("num_embeds_ada_norm", 1000)
    # diffusers gives every block its own class + timestep embedding (AdaLayerNormZero);
    # the original DiT shares one, which is what published parameter counts count.
    embedding = (classes + 1) * h + _timestep_embedding(h)
    block = embedding + _ada_zero(h) + 4 * lin(h, h) + lin(h, 4 * h) + lin(4 * h, h)
    layers = _require(cfg, "num_layers", "dit")
    embed = cin * p * p * h + h
    final = lin(h, 2 * h) + lin(h, p * p * cout)
    return Architecture("dit", h, heads, d, 4 * h, p, cin, "self", 0,
                        (BlockGroup("dit_block", layers, block),), embed, final,
                        duplicated_params=(layers - 1) * embedding)


def _hunyuan(cfg: dict[str, Any]) -> Architecture:
    heads, d = _require(cfg, "num_attention_heads", "hunyuan"), _require(cfg, "attention_head_dim", "hunyuan")
    h = cfg.get("hidden_size") or heads * d
    if h != heads * d:
        raise InputError(f"hidden_size({h}) != heads({heads}) × head dim({d})", field="config.hidden_size")
    p, cin = cfg.get("patch_size", 2), cfg.get("in_channels", 4)
    cout = 2 * cin if cfg.get("learn_sigma", True) else cin
    c, t5 = cfg.get("cross_attention_dim", 1024), cfg.get("cross_attention_dim_t5", 2048)
    f = int(h * cfg.get("mlp_ratio", 4.0))
    layers = _require(cfg, "num_layers", "hunyuan")
    block = (lin(h, h) + 2 * h) + 4 * lin(h, h) + 4 * d + 2 * h \
        + (2 * lin(h, h) + 2 * lin(c, h) + 4 * d) + 2 * h + lin(h, f) + lin(f, h)
    skip = 2 * (2 * h) + lin(2 * h, h)
    text_len, text_len_t5 = cfg.get("text_len", 77), cfg.get("text_len_t5", 256)
    style = cfg.get("use_style_cond_and_image_meta_size", True)
    extra_in = 256 * 6 + h + cfg.get("pooled_projection_dim", 1024) if style else cfg.get("pooled_projection_dim", 1024)
    pooler = (text_len_t5 + 1) * t5 + 3 * lin(t5, t5) + lin(t5, cfg.get("pooled_projection_dim", 1024))
    embed = lin(t5, 4 * t5) + lin(4 * t5, c) + (text_len + text_len_t5) * c + (cin * p * p * h + h) \
        + _timestep_embedding(h) + pooler + lin(extra_in, 4 * h) + lin(4 * h, h) + (h if style else 0)
    final = lin(h, 2 * h) + lin(h, p * p * cout)
    plain = layers // 2 + 1  # diffusers: blocks with index > layers // 2 take a long skip
    blocks = (BlockGroup("hunyuan_block", plain, block),
              BlockGroup("hunyuan_skip_block", layers - plain, block + skip))
    return Architecture("hunyuan", h, heads, d, f, p, cin, "cross", c, blocks, embed, final)


FAMILIES: dict[str, Callable[[dict[str, Any]], Architecture]] = {
    "pixart": _pixart, "sd3": _sd3, "flux": _flux, "dit": _dit, "hunyuan": _hunyuan,
}


POSITIVE_INT_KEYS = ("num_attention_heads", "attention_head_dim", "num_layers", "num_single_layers", "patch_size",
                     "in_channels", "out_channels", "cross_attention_dim", "caption_channels", "sample_size",
                     "pooled_projection_dim", "joint_attention_dim", "caption_projection_dim", "num_embeds_ada_norm",
                     "hidden_size", "text_len", "text_len_t5", "cross_attention_dim_t5")
"""Config keys that are sizes: when present (and not null) they must be positive integers."""


def _check_sizes(config: dict[str, Any]) -> None:
    for key in POSITIVE_INT_KEYS:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"expected a positive integer, got {value!r}", field=f"config.{key}")
    ratio = config.get("mlp_ratio")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0):
        raise InputError(f"expected a positive number, got {ratio!r}", field="config.mlp_ratio")


def architecture(family: str, config: dict[str, Any]) -> Architecture:
    """The :class:`Architecture` a diffusers config of ``family`` describes."""
    try:
        build = FAMILIES[family]
    except KeyError:
        raise InputError(f"unknown model family {family!r}; choices: {', '.join(FAMILIES)}",
                         field="family") from None
    _check_sizes(config)
    try:
        return build(config)
    except (TypeError, ValueError) as exc:  # a value of a type no check above knows about
        raise InputError(f"the {family} config has a value of the wrong type ({exc})", field="config") from None


def family_of_class(class_name: str) -> str:
    """The family whose diffusers transformer class is ``class_name``."""
    for family, name in DIFFUSERS_CLASSES.items():
        if name == class_name:
            return family
    raise InputError(f"unsupported diffusers class {class_name!r}; supported: "
                     f"{', '.join(DIFFUSERS_CLASSES.values())}", field="_class_name")
