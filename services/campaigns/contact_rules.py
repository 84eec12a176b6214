"""Contact rules: whether a shopper gets a campaign's message now, later, or not at all.

Every shopper a campaign asks for ends in exactly one outcome (outbox.OUTCOMES). The rules
decide all but "failed" (the caller's, for errors), first match wins:

    opted_out          the shopper opted out of the channel
    no_recommendation  nothing to recommend, so nothing to say
    capped             the channel's cap is reached by other campaigns' sends in its window
    scheduled          inside quiet hours in the shopper's zone: send_after = their end
    sent               otherwise: send_after = now

Opt-out comes first because it is the shopper's own wish and must be what the log says even
when nothing would have been sent anyway. Caps come before quiet hours so a capped shopper is
not scheduled only to be over the cap when the message goes out.

Quiet hours are wall-clock times in the shopper's IANA zone (the shop's when unknown). A span
with start > end crosses midnight (21:00–09:00); start == end means no quiet hours. The end is
found on the local calendar and converted with zoneinfo, so DST days are right; an end time
that does not exist (spring forward) maps to the instant just after the gap, and one that
happens twice (fall back) to the first occurrence still after `now`.

The decision for quiet hours depends only on (zone, now), and a chunk shares one `now`, so
`decide_many` works per distinct zone (a few dozen in a chunk of thousands), not per shopper.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from services.config import CampaignConfig, ContactCap
from services.copywriting.facts import CHANNELS
from services.errors import InvalidArgument, excerpt

UTC = timezone.utc


@dataclasses.dataclass(frozen=True)
class Decision:
    outcome: str                 # one of outbox.OUTCOMES except "failed"
    reason: str                  # short; "" for sent
    send_after: datetime | None  # UTC; set for sent and scheduled only


@dataclasses.dataclass(frozen=True)
class Decisions:
    """`decide_many`'s answer, one entry a shopper, aligned with its inputs."""

    outcome: np.ndarray      # str objects
    reason: np.ndarray       # str objects
    send_after: np.ndarray   # datetime (UTC) or None objects

    def __len__(self) -> int:
        return len(self.outcome)

    def __getitem__(self, i: int) -> Decision:
        return Decision(str(self.outcome[i]), str(self.reason[i]), self.send_after[i])


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    """The zone, or None for a name zoneinfo does not know (cached: a chunk repeats few names)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: a malformed key such as "../x"
        return None


def zone(name: str, field: str) -> ZoneInfo:
    """The IANA zone `name`, or InvalidArgument naming `field`."""
    found = _zone(name) if isinstance(name, str) and name else None
    if found is None:
        raise InvalidArgument(field, f"unknown IANA time zone {excerpt(name)}")
    return found


def _clock(value: str, field: str) -> time:
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise InvalidArgument(field, f"expected HH:MM, got {excerpt(value)}") from None


def _as_utc(now: datetime) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise InvalidArgument("now", "must be a timezone-aware datetime")
    return now.astimezone(UTC)


@dataclasses.dataclass(frozen=True)
class ContactRules:
    caps: dict[str, ContactCap]
    quiet_start: time
    quiet_end: time
    default_zone: str

    @classmethod
    def from_config(cls, config: CampaignConfig) -> ContactRules:
        zone(config.timezone, "campaign.timezone")
        for channel in config.caps:
            if channel not in CHANNELS:
                raise InvalidArgument(f"campaign.caps.{channel}", f"unknown channel; one of {', '.join(CHANNELS)}")
        return cls(
            caps=dict(config.caps),
            quiet_start=_clock(config.quiet_start, "campaign.quiet_start"),
            quiet_end=_clock(config.quiet_end, "campaign.quiet_end"),
            default_zone=config.timezone,
        )

    def _zone_name(self, name: str | float | None) -> str:
        """The shopper's zone, the shop's when unknown: None, "" or NaN (a pandas column's gap)."""
        missing = name is None or name == "" or (isinstance(name, float) and name != name)
        return self.default_zone if missing else name

    def window_start(self, channel: str, now: datetime) -> datetime | None:
        """Sends at or after this count against the channel's cap; None when it has no cap.

        What to pass as `since` to ContactLog.earlier_sends (skip the query on None).
        """
        cap = self.caps.get(_channel(channel))
        return None if cap is None else _as_utc(now) - timedelta(days=cap.window_days)

    def quiet_until(self, now: datetime, zone_name: str | None, field: str = "timezone") -> datetime | None:
        """The end of the quiet hours `now` falls in, in UTC; None outside them."""
        now = _as_utc(now)
        tz = zone(self._zone_name(zone_name), field)
        start, end = self.quiet_start, self.quiet_end
        if start == end:
            return None
        local = now.astimezone(tz)
        wall = local.time().replace(tzinfo=None, fold=0)
        if start < end:
            if not start <= wall < end:
                return None
            end_day = local.date()
        elif wall >= start:
            end_day = local.date() + timedelta(days=1)
        elif wall < end:
            end_day = local.date()
        else:
            return None
        return _first_instant_after(end_day, end, tz, now)

    def decide(
        self,
        *,
        channel: str,
        now: datetime,
        timezone: str | None,
        opted_out: bool,
        has_recommendation: bool,
        earlier_sends: int,
    ) -> Decision:
        """One shopper's outcome (see the module's docstring for the order)."""
        cap = self.caps.get(_channel(channel))
        now = _as_utc(now)
        zone_name = self._zone_name(timezone)
        zone(zone_name, "timezone")  # a bad zone is an error whatever the outcome, as in decide_many
        if opted_out:
            return Decision("opted_out", f"opted out of {channel}", None)
        if not has_recommendation:
            return Decision("no_recommendation", "nothing to recommend", None)
        if cap is not None and earlier_sends >= cap.max_sends:
            return Decision("capped", _cap_reason(channel, earlier_sends, cap), None)
        until = self.quiet_until(now, zone_name)
        if until is not None:
            return Decision("scheduled", "quiet hours", until)
        return Decision("sent", "", now)

    def decide_many(
        self,
        *,
        channel: str | Sequence[str],
        now: datetime,
        timezones: Sequence[str | None],
        opted_out: Sequence[bool] | np.ndarray,
        has_recommendation: Sequence[bool] | np.ndarray,
        earlier_sends: Sequence[int] | np.ndarray,
        first_row: int = 1,
    ) -> Decisions:
        """`decide` over a chunk, aligned with its inputs; the same answers, row by row.

        `channel` is one channel for the whole chunk or one per shopper. An unknown zone raises
        InvalidArgument naming "timezone (row N)", N = first_row + its index in the chunk.
        """
        now = _as_utc(now)
        n = len(timezones)
        channels = np.full(n, channel, dtype=object) if isinstance(channel, str) else np.asarray(channel, dtype=object)
        opted = np.asarray(opted_out, dtype=bool)
        has_rec = np.asarray(has_recommendation, dtype=bool)
        sends = np.asarray(earlier_sends, dtype=np.int64)
        if not (len(channels) == len(opted) == len(has_rec) == len(sends) == n):
            raise InvalidArgument("decide_many", "inputs of different lengths")

        # The cap of each shopper's channel; -1 = none (max_sends >= 0 always).
        limit = np.full(n, -1, dtype=np.int64)
        for name in np.unique(channels) if n else ():
            cap = self.caps.get(_channel(name))
            if cap is not None:
                limit[channels == name] = cap.max_sends
        capped = (limit >= 0) & (sends >= limit) & ~opted & has_rec

        # Quiet hours per distinct zone; every row's zone is checked, whatever its outcome:
        # a bad zone is bad data, not a property of one shopper's outcome.
        zones = np.array([self._zone_name(z) for z in timezones], dtype=object)
        until = np.full(n, None, dtype=object)
        for name in np.unique(zones) if n else ():
            rows = np.flatnonzero(zones == name)
            if _zone(name) is None:
                zone(name, f"timezone (row {first_row + int(rows[0])})")
            until[rows] = self.quiet_until(now, name)

        quiet = np.not_equal(until, None)
        outcome = np.select(
            [opted, ~has_rec, capped, quiet],
            ["opted_out", "no_recommendation", "capped", "scheduled"],
            default="sent",
        ).astype(object)
        reason = np.full(n, "", dtype=object)
        for i in np.flatnonzero(opted):
            reason[i] = f"opted out of {channels[i]}"
        reason[(outcome == "no_recommendation")] = "nothing to recommend"
        for i in np.flatnonzero(outcome == "capped"):
            reason[i] = _cap_reason(channels[i], int(sends[i]), self.caps[channels[i]])
        reason[outcome == "scheduled"] = "quiet hours"
        send_after = np.full(n, None, dtype=object)
        scheduled = outcome == "scheduled"
        send_after[scheduled] = until[scheduled]
        send_after[outcome == "sent"] = now
        return Decisions(outcome, reason, send_after)


def _channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise InvalidArgument("channel", f"unknown channel {excerpt(channel)}; one of {', '.join(CHANNELS)}")
    return channel


def _cap_reason(channel: str, sends: int, cap: ContactCap) -> str:
    return f"{channel}: {sends} sends in {cap.window_days:g} days (cap {cap.max_sends})"


def _first_instant_after(day: date, clock: time, tz: ZoneInfo, now: datetime) -> datetime:
    """The first instant after `now` at which the wall clock in `tz` reads `clock` on `day`.

    fold=0 is the earlier of a repeated time and, for a time in a spring-forward gap, the
    instant just after the gap (zoneinfo reads it with the offset before the change).
    """
    for fold in (0, 1):
        instant = datetime.combine(day, clock, tzinfo=tz).replace(fold=fold).astimezone(UTC)
        if instant > now:
            return instant
    return now  # unreachable for a wall time inside quiet hours; never schedule in the past
