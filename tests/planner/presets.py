"""Preset files for planner tests that no cluster can hold."""

# One PixArt block 32768 wide: 25.8 B parameters (51.6 GB in bf16) in a block no stage split can cut.
HUGE = """schema_version: 1
name: huge-one-block
family: pixart
config: {num_attention_heads: 1, attention_head_dim: 32768, in_channels: 4, out_channels: 8, num_layers: 1,
  cross_attention_dim: 32768, caption_channels: 64, sample_size: 32, patch_size: 2, norm_type: ada_norm_single,
  num_embeds_ada_norm: 1000, use_additional_conditions: false}
text_tokens: 8
text_embed_dim: 64
uses_cfg: true
"""
