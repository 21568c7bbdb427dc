"""Each pipeline component's torch-free parameter count equals a meta-device build of the real class.

The configs are the standard ones (written inline: no hub access in tests); building on torch's
meta device allocates nothing, so even T5-XXL builds in about a second.
"""

from __future__ import annotations

import pytest

from profiles.costs import components as c

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
diffusers = pytest.importorskip("diffusers")


def meta_params(build) -> int:
    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())


def t5_config(enc: c.T5Encoder, cls=None):
    cls = cls or transformers.T5Config
    return cls(vocab_size=enc.vocab_size, d_model=enc.d_model, d_kv=enc.d_kv, num_heads=enc.num_heads,
               d_ff=enc.d_ff, num_layers=enc.num_layers, feed_forward_proj="gated-gelu",
               relative_attention_num_buckets=enc.relative_attention_num_buckets, tie_word_embeddings=False)


def test_t5_v1_1_xxl_matches_transformers():
    # google/t5-v1_1-xxl: d_model 4096, d_ff 10240, 64 heads × 64, 24 layers, vocab 32128, gated-gelu
    cfg = transformers.T5Config(vocab_size=32128, d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=24,
                                feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    assert meta_params(lambda: transformers.T5EncoderModel(cfg)) == c.T5_V1_1_XXL.params
    assert 4.7e9 < c.T5_V1_1_XXL.params < 4.8e9


def test_mt5_xl_matches_transformers():
    cfg = transformers.MT5Config(vocab_size=250112, d_model=2048, d_kv=64, num_heads=32, d_ff=5120, num_layers=24,
                                 feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    assert meta_params(lambda: transformers.MT5EncoderModel(cfg)) == c.MT5_XL.params


@pytest.mark.parametrize("enc,hidden,inter,layers,heads,proj", [
    (c.CLIP_L, 768, 3072, 12, 12, None),            # openai/clip-vit-large-patch14 text tower
    (c.CLIP_L_PROJ, 768, 3072, 12, 12, 768),        # SD3 text_encoder
    (c.CLIP_G_PROJ, 1280, 5120, 32, 20, 1280),      # SDXL / SD3 text_encoder_2 (OpenCLIP bigG)
])
def test_clip_text_matches_transformers(enc, hidden, inter, layers, heads, proj):
    kw = dict(vocab_size=49408, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
              num_attention_heads=heads, max_position_embeddings=77)
    if proj is None:
        cfg = transformers.CLIPTextConfig(**kw)
        n = meta_params(lambda: transformers.CLIPTextModel(cfg))
    else:
        cfg = transformers.CLIPTextConfig(projection_dim=proj, **kw)
        n = meta_params(lambda: transformers.CLIPTextModelWithProjection(cfg))
    assert n == enc.params


def test_hunyuan_bert_matches_transformers():
    cfg = transformers.BertConfig(vocab_size=47020, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, max_position_embeddings=512, type_vocab_size=2)
    assert meta_params(lambda: transformers.BertModel(cfg)) == c.HUNYUAN_BERT.params


BLOCKS = (128, 256, 512, 512)


@pytest.mark.parametrize("vae,latent,quant", [
    (c.SD_VAE, 4, True),          # stabilityai/sd-vae-ft-ema, sdxl-vae (scaling aside: same shapes)
    (c.SD3_FLUX_VAE, 16, False),  # SD3-medium / FLUX.1-dev vae: 16 channels, no quant convs
])
def test_vae_matches_diffusers(vae, latent, quant):
    kw = dict(in_channels=3, out_channels=3, latent_channels=latent, block_out_channels=BLOCKS, layers_per_block=2,
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              norm_num_groups=32, use_quant_conv=quant, use_post_quant_conv=quant)
    assert meta_params(lambda: diffusers.AutoencoderKL(**kw)) == vae.params


def test_tiny_vae_config_matches_diffusers():
    cfg = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [32, 64],
           "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
           "norm_num_groups": 8}
    assert meta_params(lambda: diffusers.AutoencoderKL(**cfg)) == c.vae_from_config(cfg).params


def test_each_family_spec_resolves_to_its_pipelines_components():
    from dataclasses import replace

    from profiles.catalog.models import load_model

    def parts(name):
        m = load_model(name)
        return c.pipeline_components(m.spec, m.arch.latent_channels)

    assert [e for _, e, _ in parts("sd3-medium").text_encoders] == [c.CLIP_L_PROJ, c.CLIP_G_PROJ, c.T5_V1_1_XXL]
    assert [(e, t) for _, e, t in parts("flux-dev").text_encoders] == [(c.CLIP_L, 77), (c.T5_V1_1_XXL, 512)]
    assert parts("flux-dev").dtype == "bf16" and parts("pixart-alpha").dtype == "fp16"
    assert parts("hunyuan-dit").vae is c.SD_VAE and parts("sd3-medium").vae is c.SD3_FLUX_VAE
    assert parts("dit-xl-2").text_encoders == ()
    spec = load_model("pixart-alpha").spec
    odd = replace(spec, text_encoders=(replace(spec.text_encoders[0], kind="umT5"),))
    assert c.pipeline_components(odd, 4).unknown == ("umT5",)


def test_t5_keeps_wo_in_fp32_as_transformers_loads_fp16():
    assert transformers.T5EncoderModel._keep_in_fp32_modules == ["wo"]
    cfg = transformers.T5Config(vocab_size=32128, d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=24,
                                feed_forward_proj="gated-gelu")
    with torch.device("meta"):
        model = transformers.T5EncoderModel(cfg)
    wo = sum(p.numel() for n, p in model.named_parameters() if n.split(".")[-2] == "wo")
    assert wo == c.T5_V1_1_XXL.fp32_params
    enc = c.T5_V1_1_XXL
    assert c.weight_bytes(enc, "fp16") == (enc.params - wo) * 2 + wo * 4
    assert c.weight_bytes(enc, "bf16") == enc.params * 2
    assert c.weight_bytes(c.CLIP_L, "fp16") == c.CLIP_L.params * 2


def meta_flops(module, *args) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        module(*args)
    return counter.get_total_flops()


def test_vae_decode_flops_match_torch_flop_counter():
    kw = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=BLOCKS, layers_per_block=2,
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    with torch.device("meta"):
        vae = diffusers.AutoencoderKL(**kw)
    counted = meta_flops(vae.decode, torch.empty(1, 4, 32, 32, device="meta"))
    assert counted == pytest.approx(c.SD_VAE.decode_flops(256, 256), rel=1e-9)


def test_text_encoder_flops_match_torch_flop_counter():
    cfg = t5_config(c.T5Encoder("small", 32128, 512, 64, 8, 1024, 2))
    with torch.device("meta"):
        enc = transformers.T5EncoderModel(cfg)
    tokens = 120
    counted = meta_flops(enc, torch.zeros(1, tokens, dtype=torch.long, device="meta"))
    small = c.T5Encoder("small", 32128, 512, 64, 8, 1024, 2)
    assert counted == pytest.approx(tokens * small.flops_per_token(tokens), rel=1e-6)
