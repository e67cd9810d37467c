"""The cascade world's raw impression log as the impressions table of the artifact contract.

Stand-in until ``SequenceDataset.impressions`` is ingested by ``recsim data prepare``: the cascade world
writes ``DIR/raw/impressions.parquet`` (one row per slate, raw ids) and this maps it onto the dataset's
user and item indices, one row per (impression, slot), schema
:data:`user_models.choice_model.IMPRESSIONS_SCHEMA`. :func:`dataset_impressions` is the one place that
decides where a dataset's impressions come from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from user_models.choice_model import IMPRESSIONS_SCHEMA
from user_models.data.artifact import SequenceDataset
from user_models.errors import DatasetError
from user_models.synthetic.config import BEHAVIORS


def dataset_impressions(dataset: SequenceDataset) -> tuple[pl.DataFrame | None, dict[str, int]]:
    """The dataset's impressions (``dataset.impressions`` when ingested, else the cascade world's raw
    log next to it) and what mapping them dropped; ``(None, {})`` when the dataset has none."""
    ingested: Any = getattr(dataset, "impressions", None)
    if ingested is not None:
        return ingested, {}
    raw = dataset.meta.extra.get("raw_files", {}).get("impressions")
    if raw is None or dataset.path is None or not (dataset.path / "raw" / raw).is_file():
        return None, {}
    return impressions_from_cascade_raw(dataset, dataset.path / "raw" / raw)


def impressions_from_cascade_raw(dataset: SequenceDataset, path: Path) -> tuple[pl.DataFrame, dict[str, int]]:
    """The cascade world's ``impressions.parquet`` (``user_id, timestamp, session, step, slate,
    position, item_id, event``) on the dataset's indices; users and items that ingestion dropped
    (k-core) are dropped here too and counted: a slate of an unknown user, or whose clicked item is
    unknown, goes whole; an unknown item that was not clicked loses its slot row only."""
    try:
        raw = pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for missing/corrupt files
        raise DatasetError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    users = dataset.users.select(pl.col("user_key").alias("raw_user"), "user")
    items = dataset.items.select(pl.col("raw_id").alias("raw_item"), "item")
    behavior = {name: i + 1 for i, name in enumerate(BEHAVIORS)}
    slates = (raw.with_row_index("impression")
              .with_columns(pl.col("user_id").cast(pl.String).alias("raw_user"))
              .join(users, on="raw_user", how="left"))
    dropped = {"impressions of users not in the dataset": int(slates["user"].is_null().sum())}
    slates = slates.filter(pl.col("user").is_not_null())
    rows = (slates.with_columns(pl.col("slate").arr.to_list())
            .explode("slate").with_columns(pl.int_range(pl.len()).over("impression").alias("slot"))
            .with_columns(pl.col("slate").cast(pl.String).alias("raw_item"),
                          (pl.col("slot") == pl.col("position")).alias("is_click"))
            .join(items, on="raw_item", how="left"))
    bad_click = rows.filter(pl.col("is_click") & pl.col("item").is_null())["impression"].unique()
    dropped["impressions whose clicked item is not in the dataset"] = len(bad_click)
    rows = rows.filter(~pl.col("impression").is_in(bad_click.implode()))
    dropped["slots showing an item not in the dataset"] = int(rows["item"].is_null().sum())
    before = rows["impression"].n_unique()
    rows = rows.filter(pl.col("item").is_not_null())
    dropped["impressions with no shown item in the dataset"] = before - rows["impression"].n_unique()
    table = rows.select(
        "user", "impression", "timestamp", "session", "slot", "item",
        pl.col("is_click").cast(pl.Int8).alias("clicked"),
        pl.when(pl.col("is_click")).then(pl.col("event").replace_strict(behavior, default=None))
        .otherwise(None).alias("behavior"),
        pl.lit(None).alias("propensity"),
    ).cast(pl.Schema(IMPRESSIONS_SCHEMA)).sort(["user", "timestamp", "impression", "slot"])
    # Dense slate ids in (user, timestamp, raw order), as the contract has them.
    dense = table.select("impression").unique(maintain_order=True).with_row_index("dense")
    table = (table.join(dense, on="impression").drop("impression")
             .rename({"dense": "impression"}).select(list(IMPRESSIONS_SCHEMA))
             .cast(pl.Schema(IMPRESSIONS_SCHEMA)))
    return table, dropped
