"""Prompts through a folder's own text encoders (a tiny T5 with a word-level tokenizer, built offline)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_subprocess

from .helpers import plan, write_plan


@pytest.fixture(scope="module")
def pixart_folder(tmp_path_factory):
    import diffusers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    from runtime.model_build import build_transformer
    from profiles.catalog.models import load_model

    root = tmp_path_factory.mktemp("pixart-folder")
    preset = load_model("pixart-tiny")
    build_transformer(preset, seed=3).save_pretrained(root / "transformer")
    diffusers.AutoencoderKL(**preset.vae_config).save_pretrained(root / "vae")
    getattr(diffusers, preset.scheduler)(**preset.scheduler_config).save_pretrained(root / "scheduler")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate("a cat dog on the mat red".split())}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(root / "tokenizer")
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=64, d_kv=16, d_ff=64, num_layers=1,
                            num_heads=2)).save_pretrained(root / "text_encoder")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "PixArtAlphaPipeline", "_diffusers_version": diffusers.__version__,
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "text_encoder": ["transformers", "T5EncoderModel"],
        "transformer": ["diffusers", "PixArtTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", preset.scheduler]}))
    return root


def test_prompts_are_encoded_by_the_folders_text_encoder(pixart_folder):
    from profiles.catalog.models import load_model
    from runtime.text_encoding import encode_prompt, has_text_encoders

    preset = load_model(str(pixart_folder))
    assert has_text_encoders(pixart_folder)
    cat = encode_prompt(preset, pixart_folder, "a red cat")
    dog = encode_prompt(preset, pixart_folder, "a red dog")
    assert cat.cond.prompt_embeds.shape == (1, preset.text_tokens, 64)
    assert not torch.equal(cat.cond.prompt_embeds, dog.cond.prompt_embeds)
    assert torch.equal(cat.uncond.prompt_embeds, dog.uncond.prompt_embeds)
    assert int(cat.cond.prompt_mask.sum()) == 3  # three words (this word-level tokenizer adds no </s>)


def test_pfrun_encodes_once_and_runs_pipefusion_exactly(pixart_folder, tmp_path):
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", steps=2, degrees={"pipefusion": 2}, patches=2,
                                                        warmup_steps=2))
    res = run_subprocess("runtime", "--plan", plan_file, "--model-path", pixart_folder, "--prompt", "a cat on the mat",
                         "--no-resolution-binning", "--reference", "--json", timeout=180)
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["reference"]["max_abs_diff"] == 0.0 and report["reference"]["psnr_db"] is None
