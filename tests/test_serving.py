"""Serving that holds, on the live local application: a build published under load, a replica
killed under load, bad input of any size, and the metrics an operator scrapes.

Capacity, overload and autoscaling are measured by bench/bench_serving.py, not timed here."""

from __future__ import annotations

import re
import threading
import time

import grpc
import httpx
import pytest
import ray

from services.artifacts import current_build_dir, publish_build, rollback
from services.feedback.variant_ids import read_variant, secret_from
from tailor.v1 import common_pb2, copy_pb2, copy_pb2_grpc, marketing_pb2, marketing_pb2_grpc, ranking_pb2, ranking_pb2_grpc

pytestmark = pytest.mark.cluster

from serving.ingress import MAX_DETAILS_BYTES  # noqa: E402


@pytest.fixture(scope="module")
def shoppers(sample_artifacts) -> list[str]:
    return sample_artifacts.users.sort_values("purchase_count", ascending=False)["user_id"].astype(str).tolist()


def drive(call, requests, rate: float, during=None, timeout_s: float = 10.0) -> list:
    """Open loop: request i starts at i/rate seconds whether or not earlier ones answered;
    `during(i)` runs after request i is sent (to publish a build mid-run). Returns, per
    request, the response or the grpc.RpcError."""
    futures, started = [], time.monotonic()
    for i, request in enumerate(requests):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        futures.append(call.future(request, metadata=(("application", "tailor"),), timeout=timeout_s))
        if during is not None:
            during(i)
    out = []
    for future in futures:
        try:
            out.append(future.result())
        except grpc.RpcError as error:
            out.append(error)
    return out


def wait_for_build(stub, request, build_id: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stub.Recommend(request, metadata=(("application", "tailor"),), timeout=10).build_id == build_id:
            return
        time.sleep(0.5)
    raise AssertionError(f"the application did not move to build {build_id} in {timeout_s} s")


def test_a_build_published_under_load_drops_nothing_and_each_answer_is_one_build(live_tailor, sample_config, shoppers):
    from services.build import build_artifacts

    artifacts_dir = sample_config.artifacts_dir
    first = current_build_dir(artifacts_dir).name
    # Prepared ahead, as an operator would: built, not published.
    second = build_artifacts(sample_config.data, artifacts_dir, sample_config, force=True, publish_it=False).manifest["build_id"]
    assert second != first and current_build_dir(artifacts_dir).name == first

    marketing = marketing_pb2_grpc.MarketingServiceStub(live_tailor.channel)
    requests = [marketing_pb2.RecommendRequest(user_id=shoppers[i % 50], k=5 + i % 20, skip_copy=True) for i in range(400)]
    # Copy is written by another deployment: it must come from the same build as the list.
    with_copy = [marketing_pb2.RecommendRequest(user_id=shoppers[i % 10], k=3) for i in range(4)]
    copy_answers: list = []

    def publish_then_roll_back(i: int) -> None:
        if i == 100:
            publish_build(artifacts_dir, second, sample_config.index)
            threading.Thread(target=lambda: copy_answers.extend(drive(marketing.Recommend, with_copy, 1.0, timeout_s=120))).start()
        if i == 300:
            rollback(artifacts_dir, sample_config.index)

    answers = drive(marketing.Recommend, requests, 20.0, publish_then_roll_back)
    failed = [a for a in answers if isinstance(a, grpc.RpcError)]
    where = [i for i, a in enumerate(answers) if isinstance(a, grpc.RpcError)]
    assert not failed, f"{len(failed)} of {len(answers)} failed (requests {where[:3]}…{where[-3:]}), first: {failed[0].code()} {failed[0].details()}"
    assert all(len(a.items) for a in answers)
    seen = [a.build_id for a in answers]
    # Every request was served, by the old build, then the new, then (rolled back) the old.
    assert set(seen) == {first, second}
    assert seen[0] == first and seen[-1] == first and second in seen[100:300]

    deadline = time.monotonic() + 180
    while len(copy_answers) < len(with_copy) and time.monotonic() < deadline:
        time.sleep(1)
    secret = secret_from(sample_config.state_path(sample_config.copywriting.variant_secret_path))
    copy_failed = [f"{a.code()}: {a.details()}" for a in copy_answers if isinstance(a, grpc.RpcError)]
    assert len(copy_answers) == len(with_copy) and not copy_failed, (len(copy_answers), copy_failed[:2])
    for answer in copy_answers:
        assert read_variant(answer.copy.variant_id, secret).build_id == answer.build_id
    assert current_build_dir(artifacts_dir).name == first


def test_a_leaf_pinned_to_a_build_it_does_not_have_says_not_found(live_tailor, sample_artifacts, shoppers):
    ranking = ranking_pb2_grpc.RankingServiceStub(live_tailor.channel)
    item_ids = sample_artifacts.items["item_id"].astype(str).head(20).tolist()
    answer = ranking.Rank(
        ranking_pb2.RankRequest(user_id=shoppers[0], item_ids=item_ids, k=5, build_id=sample_artifacts.build_id),
        metadata=live_tailor.metadata,
    )
    assert answer.build_id == sample_artifacts.build_id
    with pytest.raises(grpc.RpcError) as raised:
        ranking.Rank(
            ranking_pb2.RankRequest(user_id=shoppers[0], item_ids=item_ids, k=5, build_id="20990101T000000Z-gone"), metadata=live_tailor.metadata
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND and "build_id" in raised.value.details()


def test_a_replica_killed_under_load_answers_or_says_unavailable_never_hangs(live_tailor, sample_artifacts, shoppers):
    ranking = ranking_pb2_grpc.RankingServiceStub(live_tailor.channel)
    item_ids = sample_artifacts.items["item_id"].astype(str).head(40).tolist()
    requests = [ranking_pb2.RankRequest(user_id=shoppers[i % 30], item_ids=item_ids, k=5) for i in range(200)]
    replicas = [
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and "#Ranker#" in actor["name"]
    ]
    assert replicas, "no Ranker replica found to kill"

    def kill(i: int) -> None:
        if i == 40:
            for name in replicas:
                ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)

    answers = drive(ranking.Rank, requests, 10.0, kill, timeout_s=30.0)
    codes = [grpc.StatusCode.OK if not isinstance(a, grpc.RpcError) else a.code() for a in answers]
    # Requests caught by the kill are retried on the replacement (Serve queues them until it
    # runs) or answered at once: UNAVAILABLE, or RESOURCE_EXHAUSTED once the queue for the
    # restarting deployment is full. None waits for its deadline.
    counts = {c.name: codes.count(c) for c in set(codes)}
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}, counts
    assert codes[:40].count(grpc.StatusCode.OK) == 40
    # Serve replaces the replica; the deployment answers again.
    deadline = time.monotonic() + 120
    while True:
        try:
            ranking.Rank(requests[0], metadata=live_tailor.metadata, timeout=30)
            break
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
            time.sleep(1)


def exported_total(url: str, metric: str) -> float:
    """The sum of a counter over its labels, once two scrapes 8 s apart agree (Ray exports
    application metrics every few seconds)."""
    pattern = re.compile(r"^" + metric + r"\{[^}]*\} ([0-9.e+]+)$", re.M)
    last = None
    while True:
        total = sum(float(v) for v in pattern.findall(httpx.get(url, timeout=10).text))
        if total == last:
            return total
        last = total
        time.sleep(8)


def test_a_request_whose_caller_gave_up_is_not_worked_on(live_tailor, sample_config, sample_artifacts, shoppers):
    """Copy with the model's words takes seconds; callers that give up after 0.2 s are
    cancelled through the proxy, the ingress and the copy deployment down to the engine."""
    copy = copy_pb2_grpc.CopyServiceStub(live_tailor.channel)
    item = str(sample_artifacts.items["item_id"].iloc[1])
    url = f"http://127.0.0.1:{sample_config.serving.metrics_port}/metrics"
    live_tailor.generate(shoppers[0], [item], n_variants=1)  # the counter exists
    before = exported_total(url, "ray_tailor_copy_variants_total")
    calls = [
        copy.Generate.future(
            copy_pb2.GenerateRequest(user_id=shoppers[i], item_ids=[item], n_variants=4), metadata=live_tailor.metadata, timeout=0.2
        )
        for i in range(16)
    ]
    codes = []
    for call in calls:
        try:
            call.result()
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())
    # Most give up (a copy already cached, or one that fits in 0.2 s, answers OK; each OK may write 4).
    assert codes.count(grpc.StatusCode.DEADLINE_EXCEEDED) >= 8, {c.name: codes.count(c) for c in set(codes)}
    time.sleep(10)  # long enough for work nobody cancelled to finish
    written = exported_total(url, "ray_tailor_copy_variants_total") - before
    # 64 variants were asked for; all but those already finished before the deadline are not written.
    assert written <= 4 * codes.count(grpc.StatusCode.OK) + 8, written


# --- bad input of any size ------------------------------------------------------------------

HUGE = "x" * 100_000


def oversized(base, path: list[str]):
    """A copy of `base` with the string field at `path` set to 100 kB (a repeated one: one
    100 kB entry and 5,000 short ones)."""
    request = type(base)()
    request.CopyFrom(base)
    message = request
    for name in path[:-1]:
        message = getattr(message, name)
    field = message.DESCRIPTOR.fields_by_name[path[-1]]
    if field.is_repeated:
        getattr(message, path[-1]).extend([HUGE] + ["y" * 20] * 5_000)
    else:
        setattr(message, path[-1], HUGE)
    return request


def string_fields(descriptor, prefix=()) -> list[list[str]]:
    out = []
    for field in descriptor.fields:
        if field.type == field.TYPE_STRING:
            out.append([*prefix, field.name])
        elif field.type == field.TYPE_MESSAGE and not field.is_repeated and len(prefix) < 2:
            out.extend(string_fields(field.message_type, (*prefix, field.name)))
    return out


def test_no_input_of_any_size_gets_a_long_error_or_kills_anything(live_tailor, sample_artifacts, shoppers):
    item = str(sample_artifacts.items["item_id"].iloc[0])
    marketing = marketing_pb2_grpc.MarketingServiceStub(live_tailor.channel)
    copy = copy_pb2_grpc.CopyServiceStub(live_tailor.channel)
    ranking = ranking_pb2_grpc.RankingServiceStub(live_tailor.channel)
    bases = [
        (marketing.Recommend, marketing_pb2.RecommendRequest(user_id=shoppers[0], k=5, skip_copy=True, promotion=common_pb2.Promotion(percent_off=10))),
        (marketing.DescribeUser, marketing_pb2.DescribeUserRequest(user_id=shoppers[0])),
        (marketing.RecordFeedback, marketing_pb2.RecordFeedbackRequest(user_id=shoppers[0], variant_id="v1.abc", event_type=1)),
        (ranking.Rank, ranking_pb2.RankRequest(user_id=shoppers[0], item_ids=[item], k=5)),
        (copy.Generate, copy_pb2.GenerateRequest(user_id=shoppers[0], item_ids=[item], promotion=common_pb2.Promotion(percent_off=10))),
    ]
    checked = 0
    for call, base in bases:
        for path in string_fields(base.DESCRIPTOR):
            with pytest.raises(grpc.RpcError) as raised:
                call(oversized(base, path), metadata=live_tailor.metadata, timeout=60)
            code, details = raised.value.code(), raised.value.details() or ""
            where = f"{type(base).__name__}.{'.'.join(path)}"
            assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), f"{where}: {code} {details[:200]}"
            assert len(details.encode()) <= MAX_DETAILS_BYTES, f"{where}: {len(details.encode())} bytes of error message"
            assert re.search(r"[a-z_]+", details), where
            checked += 1
    assert checked >= 25
    # Still serving.
    assert live_tailor.recommend(shoppers[0], k=3, skip_copy=True).items


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_are_exported_for_prometheus(live_tailor, sample_config, shoppers):
    for user in shoppers[:5]:
        live_tailor.recommend(user, k=5, skip_copy=True)
    with pytest.raises(grpc.RpcError):
        live_tailor.recommend("no-such-shopper", k=5, skip_copy=True)
    live_tailor.recommend(shoppers[0], k=3)  # with copy
    url = f"http://127.0.0.1:{sample_config.serving.metrics_port}/metrics"
    wanted = {
        "requests": re.compile(r'^ray_tailor_requests_total\{[^}]*code="OK"[^}]*rpc="Recommend"[^}]*\} (\d+)', re.M),
        "errors": re.compile(r'^ray_tailor_requests_total\{[^}]*code="NOT_FOUND"[^}]*rpc="Recommend"[^}]*\} (\d+)', re.M),
        "latency": re.compile(r'^ray_tailor_request_seconds_bucket\{[^}]*rpc="Recommend"', re.M),
        "candidates": re.compile(r'^ray_tailor_candidates_total\{[^}]*source="history"[^}]*\} (\d+)', re.M),
        "copy": re.compile(r'^ray_tailor_copy_variants_total\{[^}]*\} (\d+)', re.M),
        "build": re.compile(r'^ray_tailor_serving_build\{[^}]*build_id="' + re.escape(current_build_dir(sample_config.artifacts_dir).name) + r'"[^}]*\} 1(\.0)?$', re.M),
        "serve": re.compile(r"^ray_serve_deployment_request_counter_total\{", re.M),
    }
    deadline, missing = time.monotonic() + 90, set(wanted)
    while missing and time.monotonic() < deadline:
        text = httpx.get(url, timeout=10).text
        missing = {name for name, pattern in wanted.items() if not pattern.search(text)}
        if missing:
            time.sleep(3)
    assert not missing, f"not exported after 90 s: {sorted(missing)}"
    assert int(float(wanted["requests"].search(text).group(1))) >= 5
