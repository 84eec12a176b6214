"""Over gRPC against the live Tailor: ScoreUsers' stream, ForgetUser (gone from every RPC at
once, from the bandit state, the outboxes and every later build) and SetPersonalization
(popular lists and copy without profile tags, kept across a rebuild)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import grpc
import pandas as pd
import pytest

from services.shopper_rights import ShopperRights
from tailor.v1 import common_pb2, marketing_pb2
from tests.test_campaign import environment, tailor

pytestmark = pytest.mark.cluster


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details()


@pytest.fixture
def unforget(sample_config):
    """Tombstones are for ever; the session's other tests still need every sample shopper, so
    this test's tombstones are removed behind Tailor's back afterwards."""
    forgotten: list[str] = []
    yield forgotten
    rights = ShopperRights.from_config(sample_config)
    with sqlite3.connect(sample_config.rights.path) as db:
        db.executemany("DELETE FROM forgotten WHERE user_key = ?", [(rights.key(u),) for u in forgotten])
        db.execute("UPDATE changes SET n = n + 1 WHERE id = 1")
    time.sleep(3 * sample_config.rights.poll_s)


@pytest.fixture(scope="module")
def by_purchases(sample_artifacts) -> list[str]:
    return sample_artifacts.users.sort_values(["purchase_count", "user_id"], ascending=False)["user_id"].astype(str).tolist()


def test_score_users_streams_one_result_per_shopper_and_keeps_going(live_tailor, sample_artifacts, sample_config, by_purchases):
    asked = [by_purchases[0], "no-such-shopper", by_purchases[1], "x" * 500, by_purchases[2]]
    answers = list(live_tailor.score_users(asked, k=4))
    assert [a.user_id for a in answers][:3] == asked[:3] and len(answers) == 5
    assert [a.code for a in answers] == [0, grpc.StatusCode.NOT_FOUND.value[0], 0, grpc.StatusCode.INVALID_ARGUMENT.value[0], 0]
    assert "user_ids[3]" in answers[3].message and len(answers[3].message) < 300
    for answer in (answers[0], answers[2], answers[4]):
        assert len(answer.items) == 4 and answer.personalized and answer.build_id
    assert not answers[1].items

    segment = str(sample_artifacts.users["segment"].iloc[0])
    members = set(sample_artifacts.users.loc[sample_artifacts.users["segment"] == segment, "user_id"].astype(str))
    by_segment = list(live_tailor.score_users(segment=segment, k=3, with_copy=len(members) <= 50, channel="sms", language="zh"))
    assert {a.user_id for a in by_segment} == members and all(a.code == 0 for a in by_segment)
    if len(members) <= 50:
        assert all(a.copy.body for a in by_segment if a.items)

    too_many = lambda: list(live_tailor.score_users([f"u{i}" for i in range(51)], with_copy=True))
    code, details = status_of(too_many)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 50" in details and "campaign" in details
    # A shopper who opted out of the channel gets that status, and the others their lists.
    rights = ShopperRights.from_config(sample_config)
    rights.set_opted_out([by_purchases[1]], "email")
    try:
        time.sleep(3 * sample_config.rights.poll_s)
        emailed = list(live_tailor.score_users(by_purchases[:3], channel="email"))
        assert [a.code for a in emailed] == [0, grpc.StatusCode.FAILED_PRECONDITION.value[0], 0]
        assert "opted out of email" in emailed[1].message and not emailed[1].items
    finally:
        rights.set_opted_out([by_purchases[1]], "email", False)
    code, details = status_of(lambda: list(live_tailor.score_users(segment="nobody-is-here")))
    assert code == grpc.StatusCode.NOT_FOUND and details.startswith("segment:")
    code, details = status_of(lambda: list(live_tailor.score_users([by_purchases[0]], segment=segment)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("segment:")


def occurrences(folder: Path, user_id: str) -> list[str]:
    """Files under `folder` whose bytes hold the id, or whose tables hold it as a value."""
    found = []
    needle = user_id.encode()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        if needle in path.read_bytes():
            found.append(str(path))
        elif path.suffix == ".parquet":
            table = pd.read_parquet(path)
            for column in table.columns:
                values = table[column].map(lambda v: list(v) if hasattr(v, "__len__") and not isinstance(v, str) else [v])
                if any(str(x) == user_id for vs in values for x in vs):
                    found.append(f"{path}:{column}")
    return found


def test_forget_user_everywhere_and_in_every_later_build(live_tailor, sample_build, sample_config, by_purchases, tmp_path, unforget):
    from services.build import build_artifacts

    item_ids = set(pd.read_parquet(Path(sample_build.path) / "items.parquet")["item_id"].astype(str))
    user = next(u for u in by_purchases[10:] if u not in item_ids)  # an id no product shares
    # What the stores hold of them first: a variant in the bandit, a campaign message.
    issued = live_tailor.recommend(user, k=3, channel="push")
    assert issued.copy.variant_id
    outbox = tmp_path / "outbox"
    (tmp_path / "users.txt").write_text(f"{user}\n{by_purchases[11]}\n")
    tailor(sample_config, "campaign", "--artifacts", sample_config.artifacts_dir, "--users", tmp_path / "users.txt",
           "--channel", "banner", "--no-copy", "--now", "2026-11-27T23:00:00Z", "--out", outbox)
    assert occurrences(outbox, user)

    unforget.append(user)
    live_tailor.forget_user(user)
    live_tailor.forget_user(user)  # again: harmless
    started = time.monotonic()
    calls = {
        "Recommend": lambda: live_tailor.recommend(user, k=3, skip_copy=True),
        "Recommend cold start": lambda: live_tailor.recommend(user, k=3, skip_copy=True, cold_start=True),
        "DescribeUser": lambda: live_tailor.describe_user(user),
        "Retrieve": lambda: live_tailor.retrieve(k=5, user_id=user),
        "Generate": lambda: live_tailor.generate(user, [issued.items[0].item.item_id]),
        "RecordFeedback": lambda: live_tailor.record_feedback(user, issued.copy.variant_id, "click"),
        "SetPersonalization": lambda: live_tailor.set_personalization(user, False),
    }
    for name, call in calls.items():
        code, details = status_of(call)
        assert code == grpc.StatusCode.NOT_FOUND, (name, code, details)
        assert "user_id" in details and len(details) < 300
    assert time.monotonic() - started < 30
    [scored] = list(live_tailor.score_users([user]))
    assert scored.code == grpc.StatusCode.NOT_FOUND.value[0] and not scored.items

    # Out of the bandit state and the campaign's outbox (the sent banner kept, its id blanked;
    # the delivery log's row blanked).
    state = Path(sample_config.copywriting.feedback_path).parent
    assert not [p for p in occurrences(state, user) if "feedback" in p]
    assert not occurrences(outbox, user)
    log = [json.loads(line) for p in (outbox / "log").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(log) == 2 and sum(row["user_id"] == "" for row in log) == 1

    # A later build from the same event log leaves them out.
    rebuilt = build_artifacts(sample_config.data, tmp_path / "artifacts", sample_config, force=True)
    assert rebuilt.manifest["counts"]["users"] == sample_build.manifest["counts"]["users"] - 1
    assert not occurrences(rebuilt.path, user)
    assert rebuilt.manifest["data"]["dropped"]["events"]["shopper forgotten (ForgetUser)"] > 0


def test_forget_reaches_every_replica_within_a_second(live_tailor, by_purchases, unforget):
    user = by_purchases[-1]
    assert live_tailor.recommend(user, k=2, skip_copy=True).items
    unforget.append(user)
    live_tailor.forget_user(user)
    answers = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        try:
            live_tailor.recommend(user, k=2, skip_copy=True)
            answers.append((time.monotonic(), grpc.StatusCode.OK))
        except grpc.RpcError as error:
            answers.append((time.monotonic(), error.code()))
    after_a_second = [code for at, code in answers if at > deadline - 0.5]
    assert after_a_second and set(after_a_second) == {grpc.StatusCode.NOT_FOUND}


def test_personalization_off_gives_popular_lists_and_plain_copy_and_survives_a_rebuild(live_tailor, sample_build, sample_config, by_purchases):
    from services.build import build_artifacts

    user = by_purchases[3]
    before = live_tailor.recommend(user, k=5, channel="email")
    assert before.personalized
    popular = live_tailor.recommend("", k=5, cold_start=True, skip_copy=True)
    assert live_tailor.set_personalization(user, False).personalized is False
    try:
        off = live_tailor.recommend(user, k=5, channel="email")
        assert not off.personalized
        assert [i.item.item_id for i in off.items] == [i.item.item_id for i in popular.items]
        # Copy without profile tags: none of their interests, unless the product itself says it.
        product = f"{off.items[0].item.title} {off.items[0].item.category}".lower()
        text = f"{off.copy.title} {off.copy.body}".lower()
        assert before.profile.interests
        assert not [w for w in before.profile.interests if w.lower() in text and w.lower() not in product]
        [scored] = list(live_tailor.score_users([user], k=5))
        assert not scored.personalized and [i.item.item_id for i in scored.items] == [i.item.item_id for i in popular.items]

        # A new build is published and served: the setting still holds.
        rebuilt = build_artifacts(sample_config.data, sample_config.artifacts_dir, sample_config, force=True)
        deadline = time.monotonic() + 60
        while live_tailor.recommend(user, k=5, skip_copy=True).build_id != rebuilt.manifest["build_id"]:
            assert time.monotonic() < deadline, "the new build was not served within a minute"
            time.sleep(0.5)
        assert not live_tailor.recommend(user, k=5, skip_copy=True).personalized
    finally:
        live_tailor.set_personalization(user, True)
    assert live_tailor.recommend(user, k=5, skip_copy=True).personalized


def test_the_command_line_reaches_the_rights_rpcs(live_tailor, sample_config, by_purchases):
    user = by_purchases[4]
    address = f"127.0.0.1:{sample_config.serving.grpc_port}"
    off = tailor(sample_config, "personalization", "--user", user, "--off", "--address", address)
    assert "personalization off" in off.stdout
    assert not live_tailor.recommend(user, k=3, skip_copy=True).personalized
    tailor(sample_config, "personalization", "--user", user, "--on", "--address", address)
    assert live_tailor.recommend(user, k=3, skip_copy=True).personalized
    both = tailor(sample_config, "personalization", "--user", user, "--address", address, check=False)
    assert both.returncode == 2 and "--off or --on" in both.stderr
    unknown = tailor(sample_config, "forget", "--user", "x" * 500, "--address", address, check=False)
    assert unknown.returncode == 1 and "INVALID_ARGUMENT" in unknown.stderr


def test_a_replica_honours_a_change_another_made_on_its_very_next_request(tmp_path):
    # Two replicas' views of one store; neither polls within the test (poll_s 1 hour).
    from services.errors import NotFound
    from services.shopper_rights import RightsView, ShopperRights

    one = RightsView(ShopperRights(tmp_path / "rights.sqlite", tmp_path / "salt"), poll_s=3600)
    other = RightsView(ShopperRights(tmp_path / "rights.sqlite", tmp_path / "salt"), poll_s=3600)
    try:
        other.check("12345")
        assert other.personalized("12345")
        one.rights.set_personalized("12345", False)
        other.check("12345")
        assert not other.personalized("12345")
        one.rights.forget("12345")
        with pytest.raises(NotFound):
            other.check("12345")
    finally:
        one.stop()
        other.stop()
