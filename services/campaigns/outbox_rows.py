"""Reading an outbox back (outbox.py has its layout): its settings, its counts, and the message
rows the audit needs, each row traceable to its file and row for an error message."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.campaigns.outbox import MESSAGE_OUTCOMES, OUTCOMES
from services.errors import DataFileError, InvalidArgument, NotFound

CAMPAIGN_FILE = "campaign.json"
SUMMARY_FILE = "summary.json"
MESSAGE_GLOB = "messages/channel=*/date=*/part-*.parquet"
DONE_DIR = "done"
TEXT_COLUMNS = ("idempotency_key", "user_id", "segment", "loyalty_tier", "item_id", "currency", "promotion", "build_id")
MONEY_COLUMNS = ("price", "offered_price")


@dataclass
class CampaignRows:
    """An outbox as read: `rows` one per message (COLUMNS but item_ids, plus `_file`/`_row`),
    `ranked` one per (message, ranked item): message is the row's position in `rows`."""

    COLUMNS = TEXT_COLUMNS + MONEY_COLUMNS + ("item_ids",)

    outbox: Path
    settings: dict                  # campaign.json
    summary: dict | None            # summary.json; None while the campaign runs
    rows: pd.DataFrame
    ranked: pd.DataFrame
    files: list[Path]
    notes: list[str] = field(default_factory=list)

    @property
    def build_id(self) -> str:
        if self.settings.get("build_id"):
            return str(self.settings["build_id"])
        ids = self.rows["build_id"].unique() if len(self.rows) else []
        return str(ids[0]) if len(ids) == 1 else ""

    def where(self, position: int) -> tuple[Path, int]:
        """The file and its 1-based row of rows' row at `position`."""
        row = self.rows.iloc[position]
        return self.files[int(row["_file"])], int(row["_row"])


def read_outbox(outbox: Path) -> CampaignRows:
    outbox = Path(outbox)
    if not outbox.exists():
        raise NotFound("outbox", f"{outbox} does not exist")
    if not (outbox / CAMPAIGN_FILE).is_file():
        raise InvalidArgument("outbox", f"{outbox} is not a campaign outbox: it holds no {CAMPAIGN_FILE} "
                                        "(`tailor campaign --out DIR` writes one)")
    settings = read_json(outbox / CAMPAIGN_FILE)
    summary = read_json(outbox / SUMMARY_FILE) if (outbox / SUMMARY_FILE).is_file() else None
    files = sorted(outbox.glob(MESSAGE_GLOB))
    notes = []
    if summary is None:
        # While a campaign runs (or after it was killed) a part is complete only once its
        # chunk's checkpoint exists; a part without one may be half-written.
        done = {path.name for path in (outbox / DONE_DIR).glob("part-*")}
        complete = [path for path in files if path.stem in done]
        notes.append(f"the campaign has no {SUMMARY_FILE} yet (running or stopped): audited the "
                     f"{len(complete)} of {len(files)} message files whose chunk is done")
        files = complete
    frames, ranked, offset = [], [], 0
    for number, path in enumerate(files):
        table = read_message_file(path)
        frame = table.drop(["item_ids"]).to_pandas()
        for column in TEXT_COLUMNS:
            frame[column] = frame[column].fillna("").astype(str)
        frame["_file"] = number
        frame["_row"] = np.arange(1, len(frame) + 1)
        frames.append(frame)
        lists = table["item_ids"].combine_chunks()
        ranked.append(pd.DataFrame({
            "message": pc.list_parent_indices(lists).to_numpy(zero_copy_only=False) + offset,
            "item_id": pc.list_flatten(lists).cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False),
        }))
        offset += len(frame)
    rows = pd.concat(frames, ignore_index=True) if frames else empty_rows()
    ranked = pd.concat(ranked, ignore_index=True) if ranked else pd.DataFrame({"message": [], "item_id": []})
    # A chunk redone after a crash may have left its rows twice: a message is its key.
    keyed = rows["idempotency_key"] != ""
    repeated = keyed & rows["idempotency_key"].duplicated()
    if repeated.any():
        notes.append(f"{int(repeated.sum()):,} message rows repeat an idempotency key already read: counted once")
        kept = np.flatnonzero(~repeated.to_numpy())
        renumber = np.full(len(rows), -1)
        renumber[kept] = np.arange(len(kept))
        ranked = ranked.assign(message=renumber[ranked["message"].to_numpy(dtype=np.int64)])
        ranked = ranked[ranked["message"] >= 0].reset_index(drop=True)
        rows = rows.iloc[kept].reset_index(drop=True)
    counts = outcome_counts(summary)
    if counts:
        expected = sum(counts.get(outcome, 0) for outcome in MESSAGE_OUTCOMES)
        if expected != len(rows):
            notes.append(f"{SUMMARY_FILE} counts {expected:,} messages sent or scheduled; the message files hold {len(rows):,}")
    return CampaignRows(outbox=outbox, settings=settings, summary=summary, rows=rows, ranked=ranked, files=files, notes=notes)


def shopper_count(user_ids: pd.Series) -> int:
    """Distinct shoppers; a forgotten shopper's id is "" (ForgetUser), so each of those counts once."""
    return int(user_ids[user_ids != ""].nunique() + (user_ids == "").sum())


def outcome_counts(summary: dict | None) -> dict[str, int]:
    """summary.json's count per outcome (at its top level or under "outcomes"); {} without them."""
    if not summary:
        return {}
    counts = summary.get("outcomes") if isinstance(summary.get("outcomes"), dict) else summary
    return {outcome: int(counts[outcome]) for outcome in OUTCOMES
            if isinstance(counts.get(outcome), (int, float)) and not isinstance(counts.get(outcome), bool)}


def read_message_file(path: Path) -> pa.Table:
    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as error:
        raise DataFileError(path, f"not a Parquet file ({error})") from None
    missing = [column for column in CampaignRows.COLUMNS if column not in names]
    if missing:
        raise DataFileError(path, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                  "(a message row has services/campaigns/outbox.py MESSAGE_COLUMNS)")
    table = pq.read_table(path, columns=list(CampaignRows.COLUMNS))
    if not pa.types.is_list(table["item_ids"].type) and not pa.types.is_large_list(table["item_ids"].type):
        raise DataFileError(path, f"item_ids is {table['item_ids'].type}, not a list of item ids", column="item_ids")
    return table


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise DataFileError(path, f"cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise DataFileError(path, f"not JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(value, dict):
        raise DataFileError(path, f"a JSON object was expected, got {type(value).__name__}")
    return value


def empty_rows() -> pd.DataFrame:
    columns = {column: pd.Series([], dtype=object) for column in TEXT_COLUMNS}
    columns.update({column: pd.Series([], dtype=np.float64) for column in MONEY_COLUMNS})
    return pd.DataFrame({**columns, "_file": pd.Series([], dtype=np.int64), "_row": pd.Series([], dtype=np.int64)})
