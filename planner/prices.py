"""The price table ``pfplan capacity`` costs a fleet with: $ per GPU-hour, each with its source and date.

Shipped as ``profiles/data/prices.yaml`` (public on-demand cloud list prices, per GPU, as of
the date beside each); ``--prices FILE`` reads a user's own table in the same layout. A GPU
without a price (``null``) leaves the cost unanswered rather than guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from profiles.loading import load_model_file

SHIPPED_PRICES = Path(__file__).resolve().parent.parent / "profiles" / "data" / "prices.yaml"


class GpuPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    usd_per_gpu_hour: float | None = Field(None, ge=0, description="On-demand price of one GPU for one hour.")
    source: str = Field(description="Where the figure comes from (provider, instance, region, page).")
    date: str | None = Field(None, description="When the figure was read (YYYY-MM).")


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    currency: Literal["USD"] = "USD"
    gpus: dict[str, GpuPrice]

    def price(self, gpu: str) -> GpuPrice | None:
        """The entry for ``gpu`` when it has a figure, else None."""
        entry = self.gpus.get(gpu)
        return entry if entry is not None and entry.usd_per_gpu_hour is not None else None


def load_prices(path: str | Path | None = None) -> PriceTable:
    return load_model_file(PriceTable, Path(path) if path else SHIPPED_PRICES)
