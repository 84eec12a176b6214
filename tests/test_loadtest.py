"""The open-loop load generator against a real grpc.aio server started here (no Ray): it keeps
sending on schedule when answers are slow, counts latency from the scheduled start, counts
status codes, and reports bad request files by line."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import threading
import time
from types import SimpleNamespace

import grpc
import pandas as pd
import pytest
from google.protobuf.json_format import ParseDict
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from typer.testing import CliRunner

import typer

from clients.load_requests import LoadTestError, embed_requests, rank_requests, recommend_requests
from clients.loadtest import find_rpc, load, parse_ramp, read_requests, run_load, start_offsets
from clients.loadtest_command import loadtest_command, loadtest_requests_command
from tailor.v1 import common_pb2, copy_pb2, copy_pb2_grpc, marketing_pb2, marketing_pb2_grpc, ranking_pb2

# Registered as clients/cli.py registers them.
app = typer.Typer()
app.command("loadtest")(loadtest_command)
app.command("loadtest-requests")(loadtest_requests_command)
runner = CliRunner()


class Marketing(marketing_pb2_grpc.MarketingServiceServicer):
    """Recommend by user_id: "busy…" is refused, "slow…" never answers in time, "lag:MS"
    answers after MS milliseconds, anything else answers at once."""

    def __init__(self):
        self.in_flight = 0
        self.max_in_flight = 0
        self.applications: set[str] = set()

    async def Recommend(self, request, context):
        self.applications.update(value for key, value in context.invocation_metadata() if key == "application")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if request.user_id.startswith("busy"):
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "replica queue full, try later")
            if request.user_id.startswith("slow"):
                await asyncio.sleep(30)
            if request.user_id.startswith("lag:"):
                await asyncio.sleep(int(request.user_id.removeprefix("lag:")) / 1000)
            item = ranking_pb2.RankedItem(item=common_pb2.Item(item_id="A1", title="Teapot"))
            return marketing_pb2.RecommendResponse(items=[item] * request.k, build_id="test")
        finally:
            self.in_flight -= 1


class Copy(copy_pb2_grpc.CopyServiceServicer):
    async def GenerateStream(self, request, context):
        await asyncio.sleep(0.01)
        yield copy_pb2.GenerateChunk(text="Tea ")
        await asyncio.sleep(0.2)
        yield copy_pb2.GenerateChunk(text="time")
        yield copy_pb2.GenerateChunk(final=copy_pb2.CopyVariant(title="Tea time"))


class Health(health_pb2_grpc.HealthServicer):
    async def Check(self, request, context):
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def server():
    """A grpc.aio server on its own event loop in a thread: the generator's loop stays separate."""
    marketing = Marketing()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state = {}

    async def serve():
        server = grpc.aio.server()
        marketing_pb2_grpc.add_MarketingServiceServicer_to_server(marketing, server)
        copy_pb2_grpc.add_CopyServiceServicer_to_server(Copy(), server)
        health_pb2_grpc.add_HealthServicer_to_server(Health(), server)
        state["port"] = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        state["server"] = server
        ready.set()
        await server.wait_for_termination()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield SimpleNamespace(target=f"127.0.0.1:{state['port']}", marketing=marketing)
    stopping = asyncio.run_coroutine_threadsafe(state["server"].stop(0), loop)
    try:
        stopping.result(10)
    except concurrent.futures.TimeoutError:
        # grpc.aio's stop can stall in a process that also ran Ray's gRPC clients; the thread
        # is a daemon and the port is the OS's, so nothing leaks past the session.
        stopping.cancel()
    thread.join(10)


def test_every_rpc_of_the_contract_is_found_by_name():
    for method in ("Embed", "Retrieve", "IndexInfo", "Rank", "Generate", "Recommend", "DescribeUser", "RecordFeedback", "Check"):
        assert find_rpc(method).method == method
    assert find_rpc("recommend").name == "tailor.v1.MarketingService/Recommend"
    assert find_rpc("MarketingService/Recommend") == find_rpc("tailor.v1.MarketingService.Recommend")
    assert find_rpc("Check").service == "grpc.health.v1.Health"
    stream = find_rpc("GenerateStream")
    assert stream.server_streaming and stream.request_type is copy_pb2.GenerateRequest
    with pytest.raises(LoadTestError, match="no RPC 'Recomend'.*Recommend"):
        find_rpc("Recomend")


def test_ramps_and_schedules():
    assert parse_ramp("20:30, 100:30,20:30") == [(20, 30), (100, 30), (20, 30)]
    assert start_offsets([(2, 1), (4, 0.5), (0, 1), (1, 1)]) == [0, 0.5, 1, 1.25, 2.5]
    for bad in ("20", "20:x", "-5:10", "10:0", ""):
        with pytest.raises(LoadTestError):
            parse_ramp(bad)


def test_sends_stay_on_schedule_when_the_server_is_slow(server):
    # Every answer takes 400 ms: a closed loop would send ~5 in 2 s; open loop sends all 100.
    result = load(server.target, "Recommend", [{"user_id": "lag:400", "k": 3}], [(50, 2)])
    assert result.scheduled == result.sent == 100
    assert result.ok == 100 and result.codes == {"OK": 100}
    assert result.max_in_flight >= 10 and server.marketing.max_in_flight >= 10
    assert result.latency_ms.p50 >= 400
    assert result.elapsed_s < 2 + 0.4 + 2
    assert [second.sent for second in result.timeline[:2]] == [50, 50]
    assert server.marketing.applications == {"tailor"}


def test_latency_counts_from_the_scheduled_start(server):
    # The generator's own loop is blocked for 300 ms: the requests due meanwhile start late, are
    # counted late, and their latency includes the wait though the server answers at once.
    async def run_with_a_stall():
        async def stall():
            await asyncio.sleep(0.5)
            time.sleep(0.3)

        stalling = asyncio.get_running_loop().create_task(stall())
        result = await run_load(server.target, "Recommend", [marketing_pb2.RecommendRequest(user_id="u1", k=1)], [(100, 1.5)])
        await stalling
        return result

    result = asyncio.run(run_with_a_stall())
    assert result.sent == 150 and result.ok == 150
    assert result.late >= 10 and result.max_start_lag_ms >= 200
    assert result.latency_ms.max >= 200
    assert result.latency_ms.p50 < 200


def test_status_codes_are_counted_with_their_first_details(server):
    requests = [{"user_id": "u1", "k": 2}, {"user_id": "busy"}, {"user_id": "slow"}, {"user_id": "u2", "k": 2}]
    progress = io.StringIO()
    result = load(server.target, "Recommend", requests, [(40, 1)], timeout_s=0.5, progress=Console(file=progress, width=200))
    assert result.codes == {"OK": 20, "RESOURCE_EXHAUSTED": 10, "DEADLINE_EXCEEDED": 10}
    assert result.ok == 20 and result.answered == 40
    assert "queue full" in result.error_details["RESOURCE_EXHAUSTED"]
    assert "DEADLINE_EXCEEDED" in result.error_details
    assert result.latency_all_ms.max >= 500
    assert sum(second.errors_by_code.get("DEADLINE_EXCEEDED", 0) for second in result.timeline) == 10
    assert "sent 40" in progress.getvalue() and "RESOURCE_EXHAUSTED 10" in progress.getvalue()
    summary = result.summary()
    assert "RESOURCE_EXHAUSTED 10" in summary and "late starts" in summary


def test_streams_are_timed_to_the_first_chunk_and_to_the_end(server):
    request = copy_pb2.GenerateRequest(user_id="u1", item_ids=["A1"])
    result = load(server.target, "GenerateStream", [request], [(20, 1)])
    assert result.ok == 20
    assert result.first_chunk_ms.count == 20
    assert result.first_chunk_ms.p50 < 150 <= result.latency_ms.p50


def test_health_check_with_the_default_request(server):
    result = load(server.target, "Check", [], [(20, 0.5)])
    assert result.codes == {"OK": 10} and result.distinct_requests == 1


def test_a_stopped_run_reports_what_it_sent(server):
    async def stopped_after_half_a_second():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        return await run_load(server.target, "Recommend", [{"user_id": "u1", "k": 1}], [(20, 10)], stop=stop)

    result = asyncio.run(stopped_after_half_a_second())
    assert result.stopped_early and result.scheduled == 200
    assert 5 <= result.sent <= 20 and result.ok == result.sent
    assert result.duration_s < 2


def test_nothing_listening_is_one_clear_error():
    with pytest.raises(LoadTestError, match="nothing answers at 127.0.0.1:1"):
        asyncio.run(run_load("127.0.0.1:1", "Check", [], [(10, 1)], connect_timeout_s=0.5))


def test_a_bad_requests_line_is_reported_by_file_and_line(tmp_path):
    rpc = find_rpc("Recommend")
    path = tmp_path / "requests.jsonl"
    for bad_line, problem in [
        ('{"user_id": "u1", "kk": 3}', 'no field named "kk"'),
        ('{"user_id": "u1", "k": "many"}', "k field"),
        ('{"user_id": "u1", ', "not JSON"),
        ('["u1"]', "JSON object"),
    ]:
        path.write_text('{"user_id": "u1", "k": 5}\n\n' + bad_line + "\n")
        with pytest.raises(LoadTestError) as error:
            read_requests(path, rpc)
        message = str(error.value)
        assert str(path) in message and "line 3" in message and problem in message
        assert "\n" not in message
    path.write_text('{"user_id": "u1", "k": 5}\n{"user_id": "u2", "filter": {"max_price": 9.5}}\n')
    assert [request.user_id for request in read_requests(path, rpc)] == ["u1", "u2"]

    path.write_text('{"user_id": "u1"}\n{"user_id": "u1", "k": 1.5}\n')
    result = runner.invoke(app, ["loadtest", "--rpc", "Recommend", "--rate", "10", "--duration", "1", "--requests", str(path)])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "requests.jsonl line 2" in message and "Traceback" not in result.output


def test_the_command_writes_the_whole_result_as_json(server, tmp_path):
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"user_id": "u1", "k": 5, "skip_copy": true}\n{"user_id": "busy"}\n')
    out = tmp_path / "result.json"
    result = runner.invoke(
        app,
        ["loadtest", "--rpc", "Recommend", "--ramp", "20:1,40:1", "--requests", str(requests),
         "--target", server.target, "--json", str(out), "--timeout", "2"],
    )
    assert result.exit_code == 0, result.output
    assert "RESOURCE_EXHAUSTED 30" in result.output
    saved = json.loads(out.read_text())
    for key in ("target", "rpc", "application", "timeout_s", "schedule", "sent", "ok", "offered_rps", "achieved_rps",
                "codes", "error_details", "latency_ms", "late", "max_start_lag_ms", "timeline", "generator_cpu_s"):
        assert key in saved
    assert saved["schedule"] == [[20, 1], [40, 1]] and saved["sent"] == 60
    assert saved["codes"] == {"OK": 30, "RESOURCE_EXHAUSTED": 30}
    assert set(saved["latency_ms"]) >= {"p50", "p90", "p99", "p999", "max"}
    assert [second["sent"] for second in saved["timeline"][:2]] == [20, 40]
    assert set(saved["timeline"][0]) == {"t", "sent", "ok", "errors", "errors_by_code", "p99_ms"}

    usage = runner.invoke(app, ["loadtest", "--rpc", "Recommend", "--rate", "10", "--ramp", "10:1"])
    assert usage.exit_code == 2 and "either --ramp" in usage.output


def stand_in_build(n_users: int = 40) -> SimpleNamespace:
    """What recommend_requests reads of a build: the shoppers and the catalogue."""
    users = pd.DataFrame({"user_id": [str(12000 + i) for i in range(n_users)]})
    items = pd.DataFrame(
        {
            "item_id": [f"I{i}" for i in range(30)],
            "title": [f"PRODUCT {i}" for i in range(30)],
            "category": ["kitchen", "garden", ""] * 10,
            "category_id": ["c-kitchen", "c-garden", "c-misc"] * 10,
            "price": [0.5 + i for i in range(29)] + [float("nan")],
        }
    )
    return SimpleNamespace(users=users, items=items)


def test_recommend_requests_cover_every_shopper_with_a_mix_of_filters(tmp_path):
    build = stand_in_build()
    requests = recommend_requests(build, 200)
    assert requests == recommend_requests(build, 200) and requests != recommend_requests(build, 200, seed=1)
    first_pass = [request["user_id"] for request in requests[:40]]
    assert sorted(first_pass) == sorted(build.users["user_id"]) and first_pass != sorted(first_pass)
    assert all(5 <= request["k"] <= 50 and request["skip_copy"] for request in requests)
    kinds = {("categories" in request.get("filter", {}), "max_price" in request.get("filter", {}), "exclude_purchased" in request) for request in requests}
    assert kinds == {(False, False, False), (True, False, False), (False, True, False), (False, False, True)}
    assert {category for request in requests for category in request.get("filter", {}).get("categories", [])} == {"kitchen", "garden"}
    for request in requests:
        ParseDict(request, marketing_pb2.RecommendRequest())
    assert "skip_copy" not in recommend_requests(build, 5, skip_copy=False)[0]

    embeds = embed_requests(build, 8, 10)
    assert len(embeds) == 10 and all(len(request["texts"]) == 8 for request in embeds)


def test_rank_requests_draw_distinct_items_for_every_shopper():
    build = stand_in_build()
    requests = rank_requests(build, 80, candidates=12)
    assert requests == rank_requests(build, 80, candidates=12) and requests != rank_requests(build, 80, candidates=12, seed=1)
    assert sorted(r["user_id"] for r in requests[:40]) == sorted(build.users["user_id"])
    for request in requests:
        assert len(set(request["item_ids"])) == 12 and set(request["item_ids"]) <= set(build.items["item_id"])
        assert 5 <= request["k"] <= 50
        ParseDict(request, ranking_pb2.RankRequest())
    assert all(len(r["item_ids"]) == 30 for r in rank_requests(build, 3, candidates=100))  # no more than the catalogue


def test_loadtest_requests_without_a_build_says_so(tmp_path):
    result = runner.invoke(app, ["loadtest-requests", "--artifacts", str(tmp_path), "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 2 and "no published build" in " ".join(result.output.split())
