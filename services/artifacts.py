"""A published build: the files one `tailor build` writes, and how serving reads them back.

Layout under the artifacts folder:

    builds/<build_id>/      one complete build (never changed after it is published)
        manifest.json       versions, row counts, drop counts, index facts
        items.parquet       the catalog + popularity; row i ↔ item vector i ↔ index id i
        item_vectors.npy    float32, L2-normalised
        items.faiss         FAISS index over item_vectors
        users.parquet       one row per user; row i ↔ user vector i
        user_vectors.npy
        purchases.parquet   (user_id, item_id): what each user owns, never recommended again
    current -> builds/<build_id>   switched atomically (rename of a new link over the old)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from services.config import IndexConfig
from services.errors import NotFound, Unavailable
from services.recommend.vector_index import VectorIndex

CURRENT = "current"
BUILDS = "builds"
MANIFEST = "manifest.json"


def publish(artifacts_dir: Path, build_dir: Path) -> None:
    """Point `current` at build_dir in one atomic rename; readers see the old build or the new one."""
    link = artifacts_dir / CURRENT
    staging = artifacts_dir / f".{CURRENT}.{os.getpid()}"
    if staging.is_symlink() or staging.exists():
        staging.unlink()
    staging.symlink_to(build_dir.relative_to(artifacts_dir))
    os.replace(staging, link)


def current_build_dir(artifacts_dir: Path) -> Path:
    link = Path(artifacts_dir) / CURRENT
    if not (link / MANIFEST).is_file():
        raise Unavailable(
            f"no published build under {artifacts_dir}: run `tailor build --data PATH --out {artifacts_dir}`"
        )
    return link.resolve()


@dataclass
class Artifacts:
    """One published build, loaded in memory. Parts load on first use, so a replica that
    needs only the user table does not read the index."""

    path: Path
    index_config: IndexConfig

    @classmethod
    def open(cls, artifacts_dir: Path, index_config: IndexConfig) -> "Artifacts":
        return cls(current_build_dir(artifacts_dir), index_config)

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.path / MANIFEST).read_text())

    @property
    def build_id(self) -> str:
        return self.manifest["build_id"]

    @cached_property
    def items(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "items.parquet")

    @cached_property
    def item_row(self) -> pd.Series:
        return pd.Series(np.arange(len(self.items)), index=self.items["item_id"].to_numpy())

    @cached_property
    def item_vectors(self) -> np.ndarray:
        return np.load(self.path / "item_vectors.npy", mmap_mode="r")

    @cached_property
    def index(self) -> VectorIndex:
        return VectorIndex.load(self.path / "items.faiss", self.index_config)

    @cached_property
    def users(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "users.parquet")

    @cached_property
    def user_row(self) -> pd.Series:
        return pd.Series(np.arange(len(self.users)), index=self.users["user_id"].to_numpy())

    @cached_property
    def user_vectors(self) -> np.ndarray:
        return np.load(self.path / "user_vectors.npy", mmap_mode="r")

    @cached_property
    def owned_recent_first(self) -> dict[str, tuple[str, ...]]:
        purchases = pd.read_parquet(self.path / "purchases.parquet", columns=["user_id", "item_id", "last_at"])
        purchases = purchases.sort_values(["user_id", "last_at", "item_id"], ascending=[True, False, True])
        return {user: tuple(group) for user, group in purchases.groupby("user_id", sort=False)["item_id"]}

    @cached_property
    def owned(self) -> dict[str, frozenset[str]]:
        return {user: frozenset(items) for user, items in self.owned_recent_first.items()}

    def user_index(self, user_id: str, field: str = "user_id") -> int:
        if not user_id:
            raise NotFound(field, "is empty; give the id of a user in the published build")
        row = self.user_row.get(user_id)
        if row is None:
            raise NotFound(field, f"no user {user_id!r} in build {self.build_id}")
        return int(row)

    def item_indices(self, item_ids: list[str], field: str = "item_ids") -> np.ndarray:
        rows = self.item_row.reindex(item_ids)
        missing = rows.isna().to_numpy().nonzero()[0]
        if len(missing):
            first = int(missing[0])
            raise NotFound(f"{field}[{first}]", f"no item {item_ids[first]!r} in build {self.build_id}")
        return rows.to_numpy(dtype=np.int64)

    def owned_by(self, user_id: str) -> frozenset[str]:
        return self.owned.get(user_id, frozenset())
