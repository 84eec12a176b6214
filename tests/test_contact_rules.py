"""Contact rules (services/campaigns/contact_rules.py) and the contact log they count sends in
(services/campaigns/contact_log.py): outcomes and their order, quiet hours across midnight and
DST, caps over a window, a resumed run, several writers."""

from __future__ import annotations

import itertools
import multiprocessing
import random
import sqlite3
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from services.campaigns.contact_log import ContactLog
from services.campaigns.contact_rules import ContactRules, Decision
from services.campaigns.outbox import OUTCOMES
from services.config import CampaignConfig, ContactCap
from services.copywriting.facts import CHANNELS
from services.errors import InvalidArgument

UTC = timezone.utc
NOON = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)  # 12:00 in London: outside the default quiet hours
NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def rules(**changes) -> ContactRules:
    return ContactRules.from_config(CampaignConfig(**changes))


def decide(rule_set: ContactRules | None = None, **changes) -> Decision:
    shopper = dict(channel="sms", now=NOON, timezone=None, opted_out=False, has_recommendation=True, earlier_sends=0)
    return (rule_set or rules()).decide(**(shopper | changes))


def local(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz)


# --- outcomes and their order ---------------------------------------------------------------


def test_a_shopper_outside_quiet_hours_under_the_cap_is_sent_now():
    assert decide() == Decision("sent", "", NOON)


def test_an_opted_out_shopper_is_opted_out():
    assert decide(opted_out=True) == Decision("opted_out", "opted out of sms", None)


def test_a_shopper_without_a_recommendation_gets_nothing():
    assert decide(has_recommendation=False) == Decision("no_recommendation", "nothing to recommend", None)


def test_a_shopper_at_the_cap_is_capped_and_the_reason_says_the_cap():
    assert decide(earlier_sends=2) == Decision("capped", "sms: 2 sends in 7 days (cap 2)", None)
    assert decide(earlier_sends=1).outcome == "sent"


def test_a_shopper_in_quiet_hours_is_scheduled_for_their_end():
    late = datetime(2024, 3, 5, 22, 0, tzinfo=UTC)  # 22:00 in London (GMT)
    assert decide(now=late) == Decision("scheduled", "quiet hours", datetime(2024, 3, 6, 9, 0, tzinfo=UTC))


def test_the_rules_give_every_outcome_but_failed_which_is_the_callers():
    seen = {
        decide(opted_out=True).outcome,
        decide(has_recommendation=False).outcome,
        decide(earlier_sends=5).outcome,
        decide(now=NOON.replace(hour=23)).outcome,
        decide().outcome,
    }
    assert seen == set(OUTCOMES) - {"failed"}


@pytest.mark.parametrize("opted_out, has_rec, at_cap, quiet", list(itertools.product([False, True], repeat=4)))
def test_the_first_rule_that_applies_decides(opted_out, has_rec, at_cap, quiet):
    decision = decide(
        opted_out=opted_out,
        has_recommendation=has_rec,
        earlier_sends=2 if at_cap else 0,
        now=NOON.replace(hour=23) if quiet else NOON,
    )
    expected = (
        "opted_out" if opted_out
        else "no_recommendation" if not has_rec
        else "capped" if at_cap
        else "scheduled" if quiet
        else "sent"
    )
    assert decision.outcome == expected
    assert (decision.send_after is not None) == (expected in ("sent", "scheduled"))


def test_a_channel_without_a_cap_is_never_capped_and_a_zero_cap_always_is():
    assert decide(channel="banner", earlier_sends=1000).outcome == "sent"
    none_allowed = rules(caps={"sms": ContactCap(max_sends=0, window_days=1)})
    assert decide(none_allowed, earlier_sends=0).outcome == "capped"


# --- quiet hours ------------------------------------------------------------------------------


def test_quiet_hours_across_midnight_in_shanghai():
    # 14:30 UTC is 22:30 in Shanghai (UTC+8): scheduled for 09:00 the next local day.
    evening = decide(now=datetime(2024, 6, 1, 14, 30, tzinfo=UTC), timezone="Asia/Shanghai")
    assert evening.outcome == "scheduled"
    assert local(evening.send_after, SHANGHAI) == datetime(2024, 6, 2, 9, 0, tzinfo=SHANGHAI)
    assert evening.send_after == datetime(2024, 6, 2, 1, 0, tzinfo=UTC)
    # 00:30 UTC is 08:30 there: the same local morning.
    morning = decide(now=datetime(2024, 6, 1, 0, 30, tzinfo=UTC), timezone="Asia/Shanghai")
    assert morning.send_after == datetime(2024, 6, 1, 1, 0, tzinfo=UTC)
    # 09:00 there exactly is no longer quiet; 21:00 is.
    assert decide(now=datetime(2024, 6, 1, 1, 0, tzinfo=UTC), timezone="Asia/Shanghai").outcome == "sent"
    assert decide(now=datetime(2024, 6, 1, 13, 0, tzinfo=UTC), timezone="Asia/Shanghai").outcome == "scheduled"


def test_quiet_hours_in_new_york_end_at_nine_local_across_the_spring_forward_night():
    # 2024-03-10 02:00 EST became 03:00 EDT: 22:00 EST on the 9th ends at 09:00 EDT = 13:00 UTC.
    night = decide(now=datetime(2024, 3, 10, 3, 0, tzinfo=UTC), timezone="America/New_York")
    assert night.send_after == datetime(2024, 3, 10, 13, 0, tzinfo=UTC)
    assert local(night.send_after, NEW_YORK).time() == time(9, 0)
    # 20:00 EST on the 9th is before quiet hours.
    assert decide(now=datetime(2024, 3, 10, 1, 0, tzinfo=UTC), timezone="America/New_York").outcome == "sent"


def test_quiet_hours_in_new_york_end_at_nine_local_across_the_fall_back_night():
    # 2024-11-03 02:00 EDT became 01:00 EST: 22:00 EDT on the 2nd ends at 09:00 EST = 14:00 UTC.
    night = decide(now=datetime(2024, 11, 3, 2, 0, tzinfo=UTC), timezone="America/New_York")
    assert night.send_after == datetime(2024, 11, 3, 14, 0, tzinfo=UTC)


def test_an_end_of_quiet_hours_that_does_not_exist_gives_the_instant_after_the_gap():
    # 02:30 does not exist in New York on 2024-03-10; 01:00 EST (06:00 UTC) waits until 03:30 EDT.
    gap = rules(quiet_start="22:00", quiet_end="02:30")
    decision = decide(gap, now=datetime(2024, 3, 10, 6, 0, tzinfo=UTC), timezone="America/New_York")
    assert decision.send_after == datetime(2024, 3, 10, 7, 30, tzinfo=UTC)
    assert local(decision.send_after, NEW_YORK).replace(tzinfo=None) == datetime(2024, 3, 10, 3, 30)


def test_an_end_of_quiet_hours_that_happens_twice_is_the_next_one_after_now():
    # 01:00–01:59 happens twice in New York on 2024-11-03; quiet 00:00–01:30.
    repeated = rules(quiet_start="00:00", quiet_end="01:30")
    first = decide(repeated, now=datetime(2024, 11, 3, 5, 15, tzinfo=UTC), timezone="America/New_York")  # 01:15 EDT
    assert first.send_after == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)
    second = decide(repeated, now=datetime(2024, 11, 3, 6, 15, tzinfo=UTC), timezone="America/New_York")  # 01:15 EST
    assert second.send_after == datetime(2024, 11, 3, 6, 30, tzinfo=UTC)


def test_quiet_hours_that_do_not_cross_midnight():
    lunch = rules(quiet_start="12:00", quiet_end="14:00", timezone="Europe/Berlin")
    at = lambda hour, minute=0: datetime(2024, 7, 1, hour, minute, tzinfo=UTC)  # noqa: E731  Berlin is UTC+2
    assert decide(lunch, now=at(11)) == Decision("scheduled", "quiet hours", at(12))
    assert decide(lunch, now=at(9, 59)).outcome == "sent"
    assert decide(lunch, now=at(12)).outcome == "sent"
    assert decide(lunch, now=at(21)).outcome == "sent"


def test_equal_start_and_end_means_no_quiet_hours():
    always = rules(quiet_start="00:00", quiet_end="00:00")
    for hour in range(24):
        assert decide(always, now=NOON.replace(hour=hour)).outcome == "sent"


def test_an_unknown_or_empty_zone_is_the_shops():
    shop = rules(timezone="Asia/Shanghai")
    at = datetime(2024, 6, 1, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai, 15:30 in London
    assert decide(shop, now=at, timezone=None).outcome == "scheduled"
    assert decide(shop, now=at, timezone="").outcome == "scheduled"
    assert decide(shop, now=at, timezone=float("nan")).outcome == "scheduled"  # a gap in a pandas column
    assert decide(shop, now=at, timezone="Europe/London").outcome == "sent"


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Shanghai", "Australia/Lord_Howe", "America/Santiago"])
@pytest.mark.parametrize("span", [("21:00", "09:00"), ("22:00", "02:30"), ("00:00", "01:30"), ("12:00", "14:00")])
def test_a_scheduled_message_goes_out_after_now_at_the_end_of_quiet_hours(zone, span):
    # Over a year at 37-minute steps, DST days included: send_after is later than now, within
    # a day, at the end time on the local clock (or just after it where that time did not
    # exist), and no longer in quiet hours.
    rule_set = rules(quiet_start=span[0], quiet_end=span[1])
    tz, end = ZoneInfo(zone), time.fromisoformat(span[1])
    now = datetime(2024, 1, 1, tzinfo=UTC)
    while now < datetime(2025, 1, 1, tzinfo=UTC):
        until = rule_set.quiet_until(now, zone)
        if until is not None:
            assert now < until <= now + timedelta(hours=25)
            wall = until.astimezone(tz).time()
            assert wall == end or until.astimezone(tz).utcoffset() != (until - timedelta(hours=1)).astimezone(tz).utcoffset()
            assert rule_set.quiet_until(until, zone) is None
        now += timedelta(minutes=37)


# --- bad configuration and data ------------------------------------------------------------


def test_an_unknown_shop_zone_names_the_config_field():
    with pytest.raises(InvalidArgument) as error:
        rules(timezone="Mars/Olympus_Mons")
    assert error.value.field == "campaign.timezone"
    assert "Mars/Olympus_Mons" in str(error.value)


@pytest.mark.parametrize("bad", ["Mars/Olympus_Mons", "../../etc/passwd", "new york"])
def test_an_unknown_shopper_zone_is_an_error_whatever_the_outcome(bad):
    for changes in ({}, {"opted_out": True}):
        with pytest.raises(InvalidArgument) as error:
            decide(timezone=bad, **changes)
        assert error.value.field == "timezone"


def test_decide_many_names_the_row_of_an_unknown_zone():
    zones = ["Europe/London"] * 30
    zones[16] = "Europe/Atlantis"
    with pytest.raises(InvalidArgument) as error:
        rules().decide_many(
            channel="sms", now=NOON, timezones=zones, opted_out=[False] * 30,
            has_recommendation=[True] * 30, earlier_sends=[0] * 30,
        )
    assert error.value.field == "timezone (row 17)"


def test_a_cap_for_an_unknown_channel_or_a_naive_now_is_refused():
    with pytest.raises(InvalidArgument) as error:
        rules(caps={"fax": ContactCap(max_sends=1, window_days=1)})
    assert error.value.field == "campaign.caps.fax"
    with pytest.raises(InvalidArgument) as error:
        decide(channel="fax")
    assert error.value.field == "channel"
    with pytest.raises(InvalidArgument) as error:
        decide(now=datetime(2024, 3, 5, 12))
    assert error.value.field == "now"


# --- decide_many -----------------------------------------------------------------------------


ZONES = [None, "", "Europe/London", "America/New_York", "Asia/Shanghai", "Asia/Kolkata", "Pacific/Auckland"]


@pytest.mark.parametrize("seed", range(6))
def test_decide_many_answers_as_decide_does(seed):
    rng = random.Random(seed)
    rule_set = rules(quiet_start=rng.choice(["21:00", "22:00", "12:00", "00:00"]), quiet_end=rng.choice(["09:00", "02:30", "14:00"]))
    now = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(366 * 24 * 60))
    n = 3000
    shoppers = dict(
        timezones=[rng.choice(ZONES) for _ in range(n)],
        opted_out=[rng.random() < 0.1 for _ in range(n)],
        has_recommendation=[rng.random() < 0.9 for _ in range(n)],
        earlier_sends=[rng.randrange(5) for _ in range(n)],
    )
    channel = list(CHANNELS)[seed % len(CHANNELS)] if seed % 2 else [rng.choice(list(CHANNELS)) for _ in range(n)]
    many = rule_set.decide_many(channel=channel, now=now, **shoppers)
    assert len(many) == n
    for i in range(n):
        one = rule_set.decide(
            channel=channel if isinstance(channel, str) else channel[i],
            now=now,
            timezone=shoppers["timezones"][i],
            opted_out=shoppers["opted_out"][i],
            has_recommendation=shoppers["has_recommendation"][i],
            earlier_sends=shoppers["earlier_sends"][i],
        )
        assert many[i] == one, i


def test_decide_many_of_no_shoppers_is_empty():
    many = rules().decide_many(channel="sms", now=NOON, timezones=[], opted_out=[], has_recommendation=[], earlier_sends=[])
    assert len(many) == 0


# --- the contact log -------------------------------------------------------------------------


@pytest.fixture
def log(tmp_path):
    with ContactLog(tmp_path / "contacts.sqlite") as opened:
        yield opened


def test_sends_older_than_the_window_do_not_count(log):
    since = rules().window_start("sms", NOON)
    assert since == NOON - timedelta(days=7)
    log.record("spring", "sms", [("a", NOON - timedelta(days=8)), ("b", since), ("c", NOON - timedelta(days=1))])
    log.record("summer", "sms", [("a", NOON - timedelta(days=2))])
    log.record("summer", "email", [("b", NOON)])  # another channel
    counts = log.earlier_sends(["a", "b", "c", "d"], "sms", since, exclude_campaign="autumn")
    assert counts.tolist() == [1, 1, 1, 0]
    decisions = rules().decide_many(
        channel="sms", now=NOON, timezones=[None] * 4, opted_out=[False] * 4, has_recommendation=[True] * 4,
        earlier_sends=counts + 1,
    )
    assert decisions.outcome.tolist() == ["capped"] * 3 + ["sent"]


def test_a_channel_without_a_cap_has_no_window():
    assert rules().window_start("banner", NOON) is None


def test_a_resumed_run_is_not_capped_by_its_own_earlier_sends(log):
    since = NOON - timedelta(days=7)
    log.record("other", "sms", [("a", NOON - timedelta(days=1))])
    log.record("this", "sms", [("a", NOON), ("b", NOON)])  # before the run was killed
    assert log.earlier_sends(["a", "b"], "sms", since, exclude_campaign="this").tolist() == [1, 0]
    assert log.earlier_sends(["a", "b"], "sms", since, exclude_campaign="next").tolist() == [2, 1]


def test_a_scheduled_send_counts_from_its_send_after_including_the_future(log):
    log.record("night", "push", [("a", NOON + timedelta(hours=9))])
    assert log.earlier_sends(["a"], "push", NOON - timedelta(days=1), exclude_campaign="next").tolist() == [1]


def test_recording_again_changes_nothing_and_keeps_the_first_time(log, tmp_path):
    assert log.record("spring", "sms", [("a", NOON), ("b", NOON)]) == 2
    assert log.record("spring", "sms", [("a", NOON + timedelta(days=3)), ("c", NOON)]) == 1
    assert log.earlier_sends(["a"], "sms", NOON + timedelta(days=1), exclude_campaign="x").tolist() == [0]
    assert _rows(tmp_path / "contacts.sqlite") == 3


def test_counts_follow_the_keys_asked_for_repeats_included(log):
    log.record("spring", "email", [("a", NOON), ("b", NOON)])
    counts = log.earlier_sends(["b", "z", "a", "b"], "email", NOON, exclude_campaign="x")
    assert counts.dtype == np.int64 and counts.tolist() == [1, 0, 1, 1]
    assert log.earlier_sends([], "email", NOON, exclude_campaign="x").tolist() == []


def test_forget_deletes_only_that_shoppers_sends(log):
    log.record("spring", "sms", [("a", NOON), ("b", NOON)])
    log.record("summer", "push", [("a", NOON)])
    assert log.forget("a") == 2
    assert log.earlier_sends(["a", "b"], "sms", NOON, exclude_campaign="x").tolist() == [0, 1]


def test_a_log_reopened_keeps_its_sends(tmp_path):
    with ContactLog(tmp_path / "c.sqlite") as first:
        first.record("spring", "sms", [("a", NOON)])
    with ContactLog(tmp_path / "c.sqlite") as again:
        assert again.earlier_sends(["a"], "sms", NOON, exclude_campaign="x").tolist() == [1]


def test_a_naive_time_or_an_empty_key_is_refused(log):
    with pytest.raises(InvalidArgument):
        log.record("spring", "sms", [("a", datetime(2024, 1, 1))])
    with pytest.raises(InvalidArgument):
        log.record("spring", "sms", [("", NOON)])
    with pytest.raises(InvalidArgument):
        log.earlier_sends(["a"], "sms", datetime(2024, 1, 1), exclude_campaign="x")


WRITERS, BATCHES, BATCH = 2, 40, 50


def _writer(path, worker, start):
    start.wait()  # both open the new file at once, as two campaign actors would
    with ContactLog(path) as log:
        for b in range(BATCHES):
            keys = [f"w{worker}-{b}-{i}" for i in range(BATCH)] + [f"shared-{b}"]
            log.record(f"campaign-{worker}", "sms", [(k, NOON) for k in keys])
            log.record("shared", "sms", [(f"shared-{b}", NOON)])  # the same row from both
            log.earlier_sends(keys, "sms", NOON - timedelta(days=7), exclude_campaign=f"campaign-{worker}")


def test_two_processes_recording_at_once_lose_nothing(tmp_path):
    path = tmp_path / "contacts.sqlite"
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, like a Ray actor
    start = context.Event()
    workers = [context.Process(target=_writer, args=(path, w, start)) for w in range(WRITERS)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * WRITERS
    assert _rows(path) == WRITERS * BATCHES * (BATCH + 1) + BATCHES
    with ContactLog(path) as log:
        shared = log.earlier_sends([f"shared-{b}" for b in range(BATCHES)], "sms", NOON, exclude_campaign="x")
    assert shared.tolist() == [WRITERS + 1] * BATCHES


def _rows(path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM sends").fetchone()[0]
    finally:
        db.close()
