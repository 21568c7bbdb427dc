"""Each family spec's ``patch_embed`` says what its runtime adapter does when it embeds a share of the image."""

from __future__ import annotations

import pytest

from profiles.families import get_family
from runtime.families import FamilyAdapter, registry


@pytest.mark.parametrize("adapter", [a for _, a in registry().items()], ids=lambda a: a.name)
def test_the_spec_says_how_the_adapter_embeds_a_share(adapter: FamilyAdapter) -> None:
    whole = type(adapter).embed is FamilyAdapter.embed  # the base adapter embeds the whole latent and cuts it
    assert get_family(adapter.name).patch_embed == ("whole" if whole else "rows")


def test_an_unknown_patch_embed_is_refused() -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="patch_embed"):
        replace(get_family("pixart"), patch_embed="bands")
