"""Tailor under load through Ray Serve's gRPC proxy, against a do-nothing deployment behind the
same proxy in the same run (the baseline: what the proxy and Serve alone sustain here), and the
embedding service's throughput against the same model in-process (the baseline for Embed).

    .venv/bin/python bench/bench_serving.py --artifacts /tmp/ins/uci_final --json bench/results/serving.json
    .venv/bin/python bench/bench_serving.py --artifacts /tmp/ins/uci_final --quick        # ~6 min after ~3 min start-up
    .venv/bin/python bench/bench_serving.py --artifacts /tmp/ins/uci_final --throughput-optimized --json bench/results/serving_tput.json
    .venv/bin/python bench/bench_serving.py --artifacts /tmp/ins/uci_final --quick --phases noop,recommend   # a subset
    .venv/bin/python bench/bench_serving.py --artifacts /tmp/ins/uci_final --model-words  # + Generate with the LLM's words

The full run takes ~17 min after start-up on a quiet machine (+3 min with --model-words).

One run starts Tailor once (serving.local_cluster.start on the given build, free ports, the
feedback loop's state in a temporary folder; ~2-3 min here: it loads vLLM) and adds a second
application, "noop", to the same Serve instance behind the same gRPC proxy: one replica whose
async Recommend returns a fixed 5-item RecommendResponse, set up as Serve's own benchmarks set up a
trivial deployment (max_ongoing_requests 1000, access log off, 0.1 CPU). Both are called with the
same RecommendRequests; only the `application` metadata differs. Load comes from
clients/loadtest.py's open-loop generator in this process (a slow server shows up as latency and
errors, never as a lower offered rate). Before the phases: what the idle cluster takes of the
machine (JSON idle_cpu), and a warm-up of each RPC that also checks the do-nothing app answers.

Phases (--phases; durations full run / --quick):

* noop, recommend: capacity, the highest offered rate with p99 < 100 ms (OK answers, latency from
  each request's scheduled start) and >= 99 % OK, by a step search: 50/s, x1.25 (x1.5) until a step
  fails (a first step that fails halves down instead), then bisect twice (once); steps 15 s (5 s),
  a settle pause between steps, a 2 s deadline per call. Each step continues through its request
  list where the last one stopped, so no request repeats until the list is used up.
  Recommend requests: every shopper of the build in turn (load_requests.recommend_requests: k 5-50,
  filters mixed, skip_copy). Then Recommend / do-nothing (the ratio); Recommend at a steady 50/s for
  30 s (10 s): p50 / p99; overload: min(2 x capacity, 0.9 x do-nothing capacity) for 60 s (15 s)
  and at once 10 s at half the capacity (recovery), one schedule. Reported: OK answers per second as
  a share of the capacity (bar >= 0.9), answers by status code, the p50 latency of the
  RESOURCE_EXHAUSTED answers (excess should be refused, quickly), the recovery's p99 and OK share.
* direct (--throughput-optimized only): capacity of the do-nothing app and Recommend through their
  ingress replica's own gRPC port (direct ingress), bypassing the proxy.
* embed, generate: the same capacity search (steps 10 s / 5 s) and overload (30 s / 10 s) for Embed
  (8 product titles a request, load_requests.embed_requests; capacity at p99 < 300 ms, the
  model's forward pass alone taking ~50 ms) and Generate (CopyService.Generate, push,
  English, one variant; with the shipped copywriting.model_words false, templates without the LLM).
  Generate requests: --generate-shoppers shoppers' Recommend answers (k 10, over gRPC before the
  phase): each shopper's headline item first, then each one's second item, and so on.
* throughput: Embed with 1, 8 and 64 titles a request, each driven by a CLOSED loop of N
  concurrent callers (each sends its next request when its last one is answered; a refusal waits
  10 ms), N stepped up (best kept), texts/s of OK answers; against TextEmbedder(config).embed on the
  same titles in this process at the server's batch size (embedding.batch_size), with torch's
  default threads and with 1 (Ray's OMP_NUM_THREADS=1 in a replica of under one CPU; the
  Embedder sets its own, embedding.cpu_threads). Ratio = served / the better in-process figure
  (bar >= 0.9).
* ramp: autoscaling, on the deployment serve_config.yaml lets scale here: Marketing driven by
  Recommend when its min_replicas < max_replicas, else the Ranker driven by Rank calls (100
  drawn items each, through the ingress). 0.3 x Recommend's capacity, then the overload's rate
  (at least twice the most OK/s any Recommend step got, so requests queue; for Rank calls,
  Recommend's capacity: more than one Ranker answers), then 0.3 x capacity, 90 s (40 s; --ramp to choose), then an idle tail of 30 s (20 s), sampling the replica states
  serve.status() reports once a second in a thread; a timeline per second (offered, OK/s, p99,
  the watched deployment's replicas). Starts once that deployment is back at min_replicas.
* words (--model-words): Generate with copywriting.model_words true. A second application
  "copywords" (CopyWriter + its own Feedback, same build, a second vLLM engine) is deployed beside
  Tailor, called at 0.5, 1 and 2 requests/s (20 s / 10 s each, 30 s deadline, stopping at the first
  rate under 99 % OK), then deleted. The 100 ms bar cannot apply: a request samples the LLM.

--throughput-optimized sets RAY_SERVE_THROUGHPUT_OPTIMIZED=1 before Ray starts (raylet, controller,
proxy and replicas inherit it). In Ray 2.60 (ray/serve/_private/constants.py) it turns on direct
ingress (every ingress replica serves gRPC on its own port from 40000-41000, HTTP 30000-31000;
the controller's target groups in the JSON say which), deployment-to-deployment calls over gRPC
instead of Ray actor calls (RAY_SERVE_USE_GRPC_BY_DEFAULT), user code and the router on the
replica's main event loop, no Serve logs to stderr, a request-path log buffer of 1000. Not changed:
the proxy still runs (head node, the configured port) and still calls replicas as Ray actors
(RAY_SERVE_PROXY_USE_GRPC is read before the mode applies), so both applications stay reachable
on the same port by the `application` metadata (the warm-up checks it); GC freezing after start-up
is on in both modes.

Response caches: none in front of any RPC (neither the proxy nor Marketing caches answers;
Recommend and Embed compute every request). The CopyWriter keeps finished copy per (facts, arm,
build) for an hour: Generate requests here are distinct (shopper, item) pairs, and each step's
JSON says how many of its requests had been sent before (repeated_requests).

Figures move with other load on the machine (2 cores shared here): each step records the share
of CPU other processes took (other_cpu_share: 0 = the machine was ours) and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional
from serving.local_cluster import free_ports

P99_BAR_MS = 100.0
# An Embed of 8 titles is a forward pass of ~50 ms on this CPU before any queueing (in-process,
# two threads), so its capacity is taken at a p99 bound that leaves room for batching.
EMBED_P99_MS = 300.0
OK_BAR = 0.99
OVERLOAD_BAR = 0.9
EMBED_BAR = 0.9
DEADLINE_S = 2.0
WORDS_DEADLINE_S = 30.0
PHASES = ("noop", "recommend", "direct", "embed", "generate", "throughput", "ramp", "words")


# ---------------------------------------------------------------------------------------------
# The do-nothing application (module-private)


def _noop_app():
    """One replica answering Recommend with a fixed small RecommendResponse: the ceiling any
    Recommend can reach through this proxy. Settings as Serve's own benchmarks use for a trivial
    deployment (ray/serve/_private/benchmarks): many requests at once, no access log, async."""
    from ray import serve

    from tailor.v1 import common_pb2, marketing_pb2, ranking_pb2

    @serve.deployment(
        name="NoOp",
        num_replicas=1,
        max_ongoing_requests=1000,
        ray_actor_options={"num_cpus": 0.1},
        logging_config={"enable_access_log": False},
    )
    class NoOp:
        def __init__(self):
            self.response = marketing_pb2.RecommendResponse(
                build_id="noop",
                items=[
                    ranking_pb2.RankedItem(
                        item=common_pb2.Item(item_id=f"noop-{i}", title=f"Do-nothing item {i}", category="none", price=1.0 + i, has_price=True, currency="GBP", in_stock=True),
                        score=1.0 - i / 10,
                        reasons=["fixed answer"],
                        sources=["noop"],
                    )
                    for i in range(5)
                ],
            )

        async def Recommend(self, request):
            return self.response

    return NoOp.bind()


NOOP_SETTINGS = {"num_replicas": 1, "max_ongoing_requests": 1000, "num_cpus": 0.1, "access_log": False, "method": "async def Recommend"}


# ---------------------------------------------------------------------------------------------
# Small helpers



class OtherLoad:
    """Share of the machine's CPU capacity that processes other than this one and its children
    (the whole local Ray cluster) took between creation and share(): 0 = the machine was ours;
    0.5 on 2 CPUs = one CPU gone. What a child that exited meanwhile used counts as other."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, dict[int, float]]:
        import psutil

        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
        own: dict[int, float] = {}
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            try:
                times = process.cpu_times()
                own[process.pid] = times.user + times.system
            except psutil.Error:
                pass
        return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own

    def share(self) -> float:
        (t0, busy0, own0), (t1, busy1, own1) = self.start, self._read()
        # Per process, so a child gone since the start does not subtract its whole lifetime.
        own = sum(used - own0.get(pid, 0.0) for pid, used in own1.items())
        other = (busy1 - busy0) - own
        return round(max(0.0, other / (max(t1 - t0, 1e-9) * (os.cpu_count() or 1))), 2)


def idle_cpu(seconds: float) -> dict:
    """What this process and its children (the whole local Ray cluster) take of the machine
    while nothing is asked of them: a busy-polling process shows here."""
    import psutil

    me = psutil.Process()
    processes = [me, *me.children(recursive=True)]

    def label(process) -> str:
        try:
            command = process.cmdline()
        except psutil.Error:
            return "?"
        if not command:
            return process.name()
        if command[0].startswith(("ray::", "VLLM", "[VLLM")):
            return command[0][:60]
        script = next((Path(part).name for part in command[1:] if part.endswith(".py")), "")
        return f"{Path(command[0]).name} {script}".strip()[:60]

    def times() -> dict:
        out = {}
        for process in processes:
            try:
                cpu = process.cpu_times()
                out[process.pid] = cpu.user + cpu.system
            except psutil.Error:
                pass
        return out

    before, started = times(), time.perf_counter()
    time.sleep(seconds)
    after, elapsed = times(), time.perf_counter() - started
    capacity = elapsed * (os.cpu_count() or 1)
    by_label: Counter = Counter()
    for process in processes:
        if process.pid in before and process.pid in after:
            by_label[label(process)] += after[process.pid] - before[process.pid]
    return {
        "seconds": round(elapsed, 1),
        "share_of_machine": round(sum(by_label.values()) / capacity, 3),
        "top": {name: round(used / capacity, 3) for name, used in by_label.most_common(8) if used / capacity >= 0.005},
    }


def pct(values_s, q: float) -> Optional[float]:
    import numpy as np

    if not len(values_s):
        return None
    return round(float(np.percentile(np.asarray(values_s) * 1000.0, q, method="higher")), 1)


def fmt_ms(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def fmt_rate(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def codes_text(codes: dict) -> str:
    return ", ".join(f"{code} {count}" for code, count in sorted(codes.items(), key=lambda item: -item[1])) or "none"


# ---------------------------------------------------------------------------------------------
# The load generator's run, with what LoadResult does not keep


def _install_recording_run():
    """clients.loadtest's run_load builds an OpenLoopRun; this subclass keeps the last run, so a
    step can also report latency per status code and per schedule segment (the overload and its
    recovery are one schedule). Nothing else changes."""
    from clients import loadtest

    class RecordingRun(loadtest.OpenLoopRun):
        last: Optional["RecordingRun"] = None

        def result(self, *args, **kwargs):
            RecordingRun.last = self
            return super().result(*args, **kwargs)

    loadtest.OpenLoopRun = RecordingRun
    return RecordingRun


def segment_stats(run, schedule) -> list[dict]:
    """Per schedule segment: requests scheduled in it, OK, codes, OK latency and each code's p50."""
    import numpy as np

    n = run.sent
    offsets = np.array(run.offsets[:n])
    latency = np.array(run.done_at[:n]) - np.array(run.starts[:n])
    codes = np.array([code or "NO_ANSWER" for code in run.codes[:n]], dtype=object)
    out, start = [], 0.0
    for rate, seconds in schedule:
        inside = (offsets >= start - 1e-9) & (offsets < start + seconds - 1e-9)
        here = codes[inside]
        ok = inside & (codes == "OK")
        counts = Counter(here.tolist())
        p50_by_code = {code: pct(latency[inside & (codes == code)], 50) for code in counts}
        sent = int(inside.sum())
        out.append(
            {
                "rate": rate,
                "seconds": seconds,
                "sent": sent,
                "ok": int(ok.sum()),
                "ok_share": round(int(ok.sum()) / sent, 4) if sent else None,
                "ok_per_s": round(int(ok.sum()) / seconds, 2),
                "codes": dict(sorted(counts.items())),
                "p50_ms": pct(latency[ok], 50),
                "p99_ms": pct(latency[ok], 99),
                "p50_ms_by_code": p50_by_code,
            }
        )
        start += seconds
    return out


# ---------------------------------------------------------------------------------------------
# Closed loops (Embed throughput; collecting Recommend answers for Generate)


async def _closed_loop(target: str, path: str, payloads: list[bytes], concurrency: int, seconds: float, application: str, timeout_s: float) -> dict:
    import grpc

    metadata = grpc.aio.Metadata(("application", application))
    codes: Counter = Counter()
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        call = channel.unary_unary(path, _registered_method=True)
        counter = iter(range(10**12))
        t0 = time.monotonic()
        deadline = t0 + seconds

        async def caller() -> None:
            while time.monotonic() < deadline:
                i = next(counter)
                started = time.monotonic()
                try:
                    await call(payloads[i % len(payloads)], timeout=timeout_s, metadata=metadata)
                except grpc.aio.AioRpcError as error:
                    codes[error.code().name] += 1
                    await asyncio.sleep(0.01)
                    continue
                codes["OK"] += 1
                latencies.append(time.monotonic() - started)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.monotonic() - t0
    return {"concurrency": concurrency, "elapsed_s": round(elapsed, 3), "codes": dict(codes), "ok": codes["OK"],
            "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99)}


async def _recommend_answers(target: str, application: str, user_ids: list[str], k: int, concurrency: int, timeout_s: float) -> dict[str, list[str]]:
    import grpc

    from tailor.v1 import marketing_pb2

    metadata = grpc.aio.Metadata(("application", application))
    answers: dict[str, list[str]] = {}
    queue = list(reversed(user_ids))
    async with grpc.aio.insecure_channel(target) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        call = channel.unary_unary(
            "/tailor.v1.MarketingService/Recommend",
            request_serializer=marketing_pb2.RecommendRequest.SerializeToString,
            response_deserializer=marketing_pb2.RecommendResponse.FromString,
            _registered_method=True,
        )

        async def caller() -> None:
            while queue:
                user_id = queue.pop()
                for _ in range(3):  # a refusal under someone else's load: try again a little later
                    try:
                        answer = await call(marketing_pb2.RecommendRequest(user_id=user_id, k=k, skip_copy=True), timeout=timeout_s, metadata=metadata)
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.2)
                        continue
                    answers[user_id] = [item.item.item_id for item in answer.items]
                    break

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return answers


# ---------------------------------------------------------------------------------------------
# Replica states


def replica_states() -> dict[str, dict[str, dict[str, int]]]:
    """{application: {deployment: {state: count}}}: what serve.status() reports, read from the
    controller's details dict: serve.status() fetches the same dict, then validates all of it with
    pydantic in this process, holding the GIL the load generator needs (public API as fallback)."""
    from ray import serve

    def name_of(state) -> str:
        return str(getattr(state, "value", state))

    try:
        from ray.serve.context import _get_global_client

        details = _get_global_client().get_serve_details()
        return {
            app_name: {
                name: dict(Counter(name_of(replica["state"]) for replica in deployment.get("replicas", [])))
                for name, deployment in app.get("deployments", {}).items()
            }
            for app_name, app in details.get("applications", {}).items()
        }
    except (ImportError, AttributeError, KeyError, TypeError):  # a later Ray: the public API
        pass
    out: dict[str, dict[str, dict[str, int]]] = {}
    for app_name, app in serve.status().applications.items():
        out[app_name] = {
            name: {name_of(state): int(count) for state, count in deployment.replica_states.items() if count}
            for name, deployment in app.deployments.items()
        }
    return out


def running(states: dict, app: str, deployment: str) -> Optional[int]:
    return states.get(app, {}).get(deployment, {}).get("RUNNING") if states else None


class ReplicaSampler(threading.Thread):
    """replica_states() once a second, in a thread, with the monotonic time of each sample."""

    def __init__(self, every_s: float = 1.0):
        super().__init__(daemon=True)
        self.every_s = every_s
        self.samples: list[tuple[float, float, dict]] = []  # (monotonic, call seconds, states)
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                states = replica_states()
            except Exception as error:  # noqa: BLE001 - a sample missed is reported, not fatal
                states = {"error": str(error)[:200]}
            self.samples.append((started, time.monotonic() - started, states))
            self.stop_event.wait(max(0.0, self.every_s - (time.monotonic() - started)))

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


# ---------------------------------------------------------------------------------------------
# The bench


class Bench:
    def __init__(self, args, console, target: str, config, build):
        from clients import load_requests, loadtest

        self.args = args
        self.console = console
        self.target = target
        self.via = target  # where step() sends: the proxy, or a direct-ingress replica port
        self.config = config
        self.build = build
        self.loadtest = loadtest
        self.load_requests = load_requests
        self.Run = _install_recording_run()
        self.used: Counter = Counter()  # requests sent so far, per request list
        self.out: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.rpcs = {name: loadtest.find_rpc(name) for name in ("Recommend", "Rank", "Embed", "Generate")}
        self.lists: dict[str, list] = {}

    def log(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    # --- request lists -----------------------------------------------------------------------

    def messages(self, rpc: str, dicts: list[dict]) -> list:
        from google.protobuf.json_format import ParseDict

        request_type = self.rpcs[rpc].request_type
        return [ParseDict(d, request_type()) for d in dicts]

    def recommend_list(self) -> list:
        if "recommend" not in self.lists:
            n = len(self.build.users)
            self.lists["recommend"] = self.messages("Recommend", self.load_requests.recommend_requests(self.build, n, seed=0, skip_copy=True))
        return self.lists["recommend"]

    def rank_list(self) -> list:
        if "rank" not in self.lists:
            self.lists["rank"] = self.messages("Rank", self.load_requests.rank_requests(self.build, len(self.build.users), seed=0))
        return self.lists["rank"]

    def embed_list(self, size: int) -> list:
        key = f"embed{size}"
        if key not in self.lists:
            n = max(64, math.ceil(4 * len(self.build.items) / size))
            self.lists[key] = self.messages("Embed", self.load_requests.embed_requests(self.build, size, n, seed=0))
        return self.lists[key]

    def generate_list(self) -> list:
        if "generate" in self.lists:
            return self.lists["generate"]
        from tailor.v1 import common_pb2

        request_type = self.rpcs["Generate"].request_type
        recommend = self.recommend_list()
        users = list(dict.fromkeys(m.user_id for m in recommend))[: self.args.generate_shoppers]
        started = time.perf_counter()
        answers = asyncio.run(_recommend_answers(self.target, self.config.serving.app_name, users, 10, 4, 10.0))
        self.out.setdefault("generate", {})["requests"] = {
            "shoppers_asked": len(users),
            "shoppers_answered": len(answers),
            "k": 10,
            "seconds": round(time.perf_counter() - started, 1),
            "order": "each shopper's first (headline) item, then each one's second item, ...",
        }
        requests = []
        for rank in range(10):
            for user in users:
                items = answers.get(user, [])
                if rank < len(items):
                    requests.append(
                        request_type(user_id=user, item_ids=[items[rank]], channel=common_pb2.CHANNEL_PUSH, language=common_pb2.LANGUAGE_EN, n_variants=1)
                    )
        if not requests:
            raise RuntimeError("no Recommend answer to make Generate requests from")
        self.out["generate"]["requests"]["distinct"] = len(requests)
        self.lists["generate"] = requests
        return requests

    # --- one step ----------------------------------------------------------------------------

    def step(self, label: str, key: str, rpc: str, application: str, requests: list, schedule, timeout_s: float = DEADLINE_S, sampler: Optional[ReplicaSampler] = None) -> dict:
        """Offer `schedule` open-loop, the request list continued where its last step stopped."""
        start = self.used[key] % len(requests)
        rotated = requests[start:] + requests[:start]
        load_before = os.getloadavg()[0]
        other = OtherLoad()
        result = self.loadtest.load(self.via, self.rpcs[rpc], rotated, schedule, application=application, timeout_s=timeout_s)
        other_share = other.share()
        run = self.Run.last
        before = self.used[key]
        self.used[key] += result.sent
        after = self.used[key]
        repeated = max(0, after - max(before, len(requests)))
        sent = max(result.sent, 1)
        record = {
            "label": label,
            "target": self.via,
            "rate": schedule[0][0] if len(schedule) == 1 else None,
            "schedule": [list(s) for s in schedule],
            "ok_share": round(result.ok / sent, 4),
            "p50_ms": result.latency_ms.p50,
            "p99_ms": result.latency_ms.p99,
            "segments": segment_stats(run, schedule),
            "distinct_requests": len(requests),
            "repeated_requests": repeated,
            "other_cpu_share": other_share,
            "load_average_1m": round(load_before, 2),
            "t0_monotonic": run.t0,
            "result": result.to_dict(),
        }
        try:
            record["replicas_after"] = replica_states()
        except Exception as error:  # noqa: BLE001
            record["replicas_after"] = {"error": str(error)[:200]}
        return record

    def passes(self, record: dict, p99_ms: float = P99_BAR_MS) -> bool:
        p99 = record["p99_ms"]
        return record["ok_share"] >= OK_BAR and p99 is not None and p99 < p99_ms

    def step_line(self, name: str, record: dict, verdict: str = "") -> None:
        result = record["result"]
        marketing = running(record.get("replicas_after", {}), self.config.serving.app_name, "Marketing")
        others = [code for code in result["codes"] if code != "OK"]
        self.log(
            f"  {name:<10} {fmt_rate(result['offered_rps']):>6}/s x {result['duration_s']:g} s: OK {100 * record['ok_share']:.1f}%  "
            f"p50 {fmt_ms(record['p50_ms'])} p99 {fmt_ms(record['p99_ms'])} ms  "
            + (f"[{codes_text({c: result['codes'][c] for c in others})}]  " if others else "")
            + f"late {result['late']}  Marketing {marketing}  other CPU {record['other_cpu_share']:.2f}  {verdict}"
        )

    # --- capacity search ---------------------------------------------------------------------

    def capacity(self, name: str, key: str, rpc: str, application: str, requests: list, step_s: Optional[float] = None, p99_ms: float = P99_BAR_MS) -> dict:
        a = self.args
        step_s = step_s or a.step_s
        steps: list[dict] = []
        last_pass: Optional[float] = None
        first_fail: Optional[float] = None

        def run_at(rate: float) -> bool:
            record = self.step(f"{name} {rate:g}/s", key, rpc, application, requests, [(rate, step_s)])
            ok = self.passes(record, p99_ms)
            record["passed"] = ok
            steps.append(record)
            self.step_line(name, record, "pass" if ok else "FAIL")
            time.sleep(a.settle_s)
            return ok

        rate = a.start_rate
        while True:
            if run_at(rate):
                last_pass = rate
                if rate * a.growth > a.max_rate:
                    break
                rate = round(rate * a.growth, 1)
            else:
                first_fail = rate
                break
        # The first step failed: halve until one passes.
        while last_pass is None and rate / 2 >= a.min_rate:
            rate = round(rate / 2, 1)
            if run_at(rate):
                last_pass = rate
            else:
                first_fail = rate
        for _ in range(a.bisections):
            if last_pass is None or first_fail is None or first_fail - last_pass < 0.03 * last_pass:
                break
            mid = round((last_pass + first_fail) / 2, 1)
            if run_at(mid):
                last_pass = mid
            else:
                first_fail = mid
        at_capacity = next((s for s in reversed(steps) if s["passed"] and s["rate"] == last_pass), None)
        return {
            "capacity_rps": last_pass or 0.0,
            "first_failed_rps": first_fail,
            "criteria": {"p99_ms_below": p99_ms, "ok_share_at_least": OK_BAR, "deadline_s": DEADLINE_S, "step_s": step_s, "settle_s": a.settle_s},
            "p50_ms_at_capacity": at_capacity["p50_ms"] if at_capacity else None,
            "p99_ms_at_capacity": at_capacity["p99_ms"] if at_capacity else None,
            "steps": steps,
        }

    def overload(self, name: str, key: str, rpc: str, application: str, requests: list, capacity: float, seconds: float) -> dict:
        noop = self.out.get("noop", {}).get("capacity", {}).get("capacity_rps")
        rate = 2 * capacity if not noop else min(2 * capacity, 0.9 * noop)
        rate = round(rate, 1)
        recovery = round(0.5 * capacity, 1)
        schedule = [(rate, seconds), (recovery, self.args.recovery_s)]
        record = self.step(f"{name} overload", key, rpc, application, requests, schedule)
        over, rec = record["segments"]
        refused = over["p50_ms_by_code"].get("RESOURCE_EXHAUSTED")
        summary = {
            "offered_rps": rate,
            "rule": "min(2 x capacity, 0.9 x do-nothing capacity)" if noop else "2 x capacity (no do-nothing capacity in this run)",
            "seconds": seconds,
            "ok_per_s": over["ok_per_s"],
            "ok_share_of_capacity": round(over["ok_per_s"] / capacity, 3) if capacity else None,
            "bar_ok_share_of_capacity": OVERLOAD_BAR,
            "meets_bar": bool(capacity and over["ok_per_s"] / capacity >= OVERLOAD_BAR),
            "codes": over["codes"],
            "resource_exhausted_p50_ms": refused,
            "p50_ms_by_code": over["p50_ms_by_code"],
            "ok_p50_ms": over["p50_ms"],
            "ok_p99_ms": over["p99_ms"],
            "recovery": {"offered_rps": recovery, "seconds": self.args.recovery_s, "p50_ms": rec["p50_ms"], "p99_ms": rec["p99_ms"], "ok_share": rec["ok_share"], "codes": rec["codes"]},
            "step": record,
        }
        self.log(
            f"  {name:<10} overload {rate:g}/s x {seconds:g} s: OK {over['ok_per_s']:.1f}/s "
            f"({summary['ok_share_of_capacity']} of capacity {capacity:g}/s)  {codes_text(over['codes'])}  "
            f"RESOURCE_EXHAUSTED p50 {fmt_ms(refused)} ms"
        )
        self.log(f"  {name:<10} recovery {recovery:g}/s x {self.args.recovery_s:g} s: OK {100 * (rec['ok_share'] or 0):.1f}%  p99 {fmt_ms(rec['p99_ms'])} ms  {codes_text(rec['codes'])}")
        time.sleep(self.args.settle_s)
        return summary

    # --- phases ------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """A few calls of each RPC to each application (first calls load lazily), and the check
        that the do-nothing app answers on the proxy's port."""
        app = self.config.serving.app_name
        checks = {}
        for label, key, rpc, application, requests in (
            ("noop", "recommend", "Recommend", "noop", self.recommend_list()),
            ("recommend", "recommend", "Recommend", app, self.recommend_list()),
            ("embed", "embed8", "Embed", app, self.embed_list(8)),
        ):
            record = self.step(f"warm-up {label}", key, rpc, application, requests, [(10, 2)], timeout_s=10.0)
            checks[label] = {"codes": record["result"]["codes"], "error_details": record["result"]["error_details"]}
            self.log(f"  warm-up {label:<10} {codes_text(record['result']['codes'])}")
        self.out["warm_up"] = checks
        time.sleep(self.args.settle_s)

    def phase_noop(self) -> None:
        self.log("Do-nothing application (same proxy, same requests)")
        self.out["noop"] = {"deployment": NOOP_SETTINGS, "capacity": self.capacity("noop", "recommend", "Recommend", "noop", self.recommend_list())}

    def phase_recommend(self) -> None:
        self.log("Recommend")
        app = self.config.serving.app_name
        requests = self.recommend_list()
        section = self.out.setdefault("recommend", {})
        section["capacity"] = self.capacity("recommend", "recommend", "Recommend", app, requests)
        steady = self.step("recommend steady 50/s", "recommend", "Recommend", app, requests, [(50, self.args.steady_s)])
        self.step_line("steady", steady)
        section["steady_50"] = {"p50_ms": steady["p50_ms"], "p99_ms": steady["p99_ms"], "ok_share": steady["ok_share"], "step": steady}
        time.sleep(self.args.settle_s)
        capacity = section["capacity"]["capacity_rps"]
        if capacity:
            section["overload"] = self.overload("recommend", "recommend", "Recommend", app, requests, capacity, self.args.overload_s)
        noop = self.out.get("noop", {}).get("capacity", {}).get("capacity_rps")
        if noop:
            self.out["ratio_recommend_to_noop"] = round(capacity / noop, 3)

    def phase_rpc(self, name: str, key: str, rpc: str, requests: list, p99_ms: float = P99_BAR_MS) -> None:
        self.log(name.capitalize() + ("" if p99_ms == P99_BAR_MS else f" (capacity at p99 < {p99_ms:g} ms)"))
        app = self.config.serving.app_name
        section = self.out.setdefault(name, {})
        section["capacity"] = self.capacity(name, key, rpc, app, requests, self.args.side_step_s, p99_ms)
        capacity = section["capacity"]["capacity_rps"]
        if capacity:
            section["overload"] = self.overload(name, key, rpc, app, requests, capacity, self.args.side_overload_s)
        if rpc == "Generate":
            section["model_words"] = self.config.copywriting.model_words

    def phase_direct(self) -> None:
        """Throughput-optimized mode only: the do-nothing app and Recommend through their ingress
        replicas' own gRPC ports (direct ingress), bypassing the proxy; the first target of each
        application's gRPC target group (one replica: a client would balance over all of them)."""
        if not self.args.throughput_optimized:
            self.log("Direct ingress: skipped (only with --throughput-optimized)")
            return
        app = self.config.serving.app_name
        groups = {g.get("app"): g for g in grpc_targets() if g.get("protocol") == "gRPC"}
        section = self.out.setdefault("direct_ingress", {"note": self.phase_direct.__doc__.split("\n\n")[0].replace("\n", " ")})
        for name, application in (("noop", "noop"), ("recommend", app)):
            group = groups.get(application)
            if not group or not group.get("targets") or group.get("route_prefix") == "/":
                section[name] = {"error": f"no direct-ingress gRPC target for {application}: {groups}"}
                continue
            self.via = group["targets"][0]  # the node's address: this machine
            self.log(f"Direct ingress: {name} at {self.via} (targets of {application}: {', '.join(group['targets'])})")
            try:
                section[name] = {"targets": group["targets"], "capacity": self.capacity(f"{name} DI", "recommend", "Recommend", application, self.recommend_list())}
            finally:
                self.via = self.target

    def phase_embed(self) -> None:
        self.phase_rpc("embed", "embed8", "Embed", self.embed_list(8), EMBED_P99_MS)
        self.out["embed"]["texts_per_request"] = 8

    def phase_generate(self) -> None:
        self.phase_rpc("generate", "generate", "Generate", self.generate_list())

    def phase_throughput(self) -> None:
        """Embed texts/s over gRPC (closed loop) against the same model in-process."""
        import torch

        from services.recommend.embedding import TextEmbedder

        self.log("Embedding throughput (closed loop of N concurrent callers; texts/s of OK answers)")
        a = self.args
        rpc = self.rpcs["Embed"]
        app = self.config.serving.app_name
        levels = {1: [16, 48], 8: [4, 16], 64: [2, 6]} if a.quick else {1: [8, 32, 64], 8: [4, 16, 32], 64: [1, 4, 8]}
        served: dict[int, dict] = {}
        for size, concurrencies in levels.items():
            requests = self.embed_list(size)
            payloads = [m.SerializeToString() for m in requests]
            asyncio.run(_closed_loop(self.target, rpc.path, payloads, concurrencies[0], 2.0, app, 10.0))  # warm-up
            runs = []
            for concurrency in concurrencies:
                other = OtherLoad()
                run = asyncio.run(_closed_loop(self.target, rpc.path, payloads, concurrency, a.throughput_s, app, 10.0))
                texts = run["ok"] * size  # every request of the list carries `size` titles
                run.update(texts_ok=texts, texts_per_s=round(texts / run["elapsed_s"], 1), requests_per_s=round(run["ok"] / run["elapsed_s"], 1), other_cpu_share=other.share())
                runs.append(run)
                self.log(
                    f"  Embed x{size:<3} {concurrency:>3} callers: {run['texts_per_s']:8.1f} texts/s  {run['requests_per_s']:7.1f} req/s  "
                    f"p50 {fmt_ms(run['p50_ms'])} p99 {fmt_ms(run['p99_ms'])} ms  {codes_text(run['codes'])}  other CPU {run['other_cpu_share']:.2f}"
                )
                time.sleep(1.0)
            best = max(runs, key=lambda r: r["texts_per_s"])
            served[size] = {"best_texts_per_s": best["texts_per_s"], "best_concurrency": best["concurrency"], "runs": runs}

        # The baseline: the same titles, in-process, at the server's batch size.
        titles = [t for m in self.embed_list(64) for t in m.texts][:2048]
        embedder = TextEmbedder(self.config)
        chunk = 8 * embedder.batch_size  # texts per embed() call: 8 batches, so a timed loop ends close to its time
        baseline = {}
        default_threads = torch.get_num_threads()
        try:
            for label, threads in (("default_threads", default_threads), ("one_thread", 1)):
                torch.set_num_threads(threads)
                embedder.embed(titles[:chunk])  # warm-up
                other = OtherLoad()
                done, started = 0, time.perf_counter()
                while time.perf_counter() - started < a.baseline_s:
                    part = titles[done % len(titles):][:chunk]
                    embedder.embed(part)
                    done += len(part)
                elapsed = time.perf_counter() - started
                baseline[label] = {"threads": threads, "texts": done, "seconds": round(elapsed, 2), "texts_per_s": round(done / elapsed, 1), "other_cpu_share": other.share()}
                self.log(f"  in-process TextEmbedder.embed, batch {embedder.batch_size}, {threads} thread(s): {done / elapsed:8.1f} texts/s  other CPU {baseline[label]['other_cpu_share']:.2f}")
        finally:
            torch.set_num_threads(default_threads)
        best_baseline = max(b["texts_per_s"] for b in baseline.values())
        ratios = {size: round(s["best_texts_per_s"] / best_baseline, 3) for size, s in served.items()}
        self.out["embed_throughput"] = {
            "driver": "closed loop: N concurrent callers, each sends its next request when its last is answered (a refusal waits 10 ms); best N kept",
            "seconds_per_level": a.throughput_s,
            "batch_size": embedder.batch_size,
            "served": {str(k): v for k, v in served.items()},
            "baseline": baseline,
            "baseline_texts_per_s": best_baseline,
            "ratio": {str(k): v for k, v in ratios.items()},
            "bar": EMBED_BAR,
            "meets_bar": {str(k): v >= EMBED_BAR for k, v in ratios.items()},
        }
        del embedder

    def wait_for_replicas(self, deployment: str, replicas: int, timeout_s: float) -> dict:
        app = self.config.serving.app_name
        started = time.monotonic()
        states = replica_states()
        while time.monotonic() - started < timeout_s:
            counts = states.get(app, {}).get(deployment, {})
            if counts.get("RUNNING") == replicas and sum(counts.values()) == replicas:
                break
            time.sleep(1.0)
            states = replica_states()
        return {"waited_s": round(time.monotonic() - started, 1), "replicas": states.get(app, {}).get(deployment, {})}

    def phase_ramp(self) -> None:
        a = self.args
        app = self.config.serving.app_name
        capacity = self.out.get("recommend", {}).get("capacity", {}).get("capacity_rps") or a.fallback_capacity
        noop = self.out.get("noop", {}).get("capacity", {}).get("capacity_rps")
        low = round(max(5.0, 0.3 * capacity), 1)
        # Serve adds a Marketing replica when its replicas hold more than target_ongoing_requests
        # each on average: only past saturation, when requests queue. So the high level is the
        # overload's rate, and at least twice the most OK answers per second any Recommend step
        # got (a p99-bound capacity measured on a busy machine understates the throughput).
        recommend = self.out.get("recommend", {})
        steps = recommend.get("capacity", {}).get("steps", []) + [recommend[k]["step"] for k in ("steady_50", "overload") if k in recommend]
        best_ok = max((seg["ok_per_s"] for step in steps for seg in step["segments"]), default=0.0)
        high = round(max(min(2 * capacity, 0.9 * noop) if noop else 2 * capacity, 2 * best_ok, 3 * low), 1)
        from serving.app import deployment_settings

        settings = deployment_settings()

        def bounds(name: str) -> tuple[int, int]:
            scaling = settings.get(name, {}).get("autoscaling_config", {})
            return scaling.get("min_replicas", 1), scaling.get("max_replicas", 1)

        # Marketing is held at a fixed count on a machine too small for more (serve_config.yaml);
        # then the Ranker shows the same autoscaling, its Rank calls queueing behind the ingress.
        watched = "Marketing" if bounds("Marketing")[1] > bounds("Marketing")[0] else "Ranker"
        rpc, key, requests = ("Recommend", "recommend", self.recommend_list()) if watched == "Marketing" else ("Rank", "rank", self.rank_list())
        if watched == "Ranker":
            # A Rank call (100 items) costs the Ranker more than a Recommend costs its replica:
            # at Recommend's capacity Rank calls queue at one Ranker (about 35/s here), and the
            # proxy, carrying less than its do-nothing rate, is not what refuses them.
            high = round(max(capacity, 3 * low), 1)
        schedule = [(low, 5.0), (high, 15.0), (low, 20.0)] if a.quick else [(low, 20.0), (high, 35.0), (low, 35.0)]
        if a.ramp:
            schedule = self.loadtest.parse_ramp(a.ramp)
        self.log(f"Autoscaling: ramp on {rpc} ({watched}) {' -> '.join(f'{r:g}/s for {s:g} s' for r, s in schedule)}, then {a.ramp_tail_s:g} s idle")
        waited = self.wait_for_replicas(watched, bounds(watched)[0], a.downscale_wait_s)
        self.log(f"  before the ramp: {watched} {waited['replicas']} (waited {waited['waited_s']:g} s)")
        sampler = ReplicaSampler()
        sampler.start()
        try:
            record = self.step("ramp", key, rpc, app, requests, schedule)
            time.sleep(a.ramp_tail_s)
        finally:
            sampler.stop()
        t0 = record["t0_monotonic"]
        per_second: dict[int, dict] = {}
        for at, _, states in sampler.samples:
            per_second.setdefault(math.floor(at - t0), states)
        rows = []
        timeline = {row["t"]: row for row in record["result"]["timeline"]}
        last_states: dict = {}
        total = int(sum(s for _, s in schedule) + a.ramp_tail_s) + 1
        for t in range(-1, total):
            states = per_second.get(t, last_states)
            last_states = states
            line = timeline.get(t, {})
            replicas = states.get(app, {}).get(watched, {}) if isinstance(states, dict) else {}
            others = {
                name: counts.get("RUNNING", 0)
                for name, counts in (states.get(app, {}) if isinstance(states, dict) else {}).items()
                if name != watched and counts.get("RUNNING", 0) != bounds(name)[0]
            }
            rows.append(
                {
                    "t": t,
                    "offered": line.get("sent"),
                    "ok": line.get("ok"),
                    "errors": line.get("errors_by_code"),
                    "p99_ms": line.get("p99_ms"),
                    "replicas": replicas,
                    "others_not_at_min": others,
                }
            )
        running_counts = [r["replicas"].get("RUNNING", 0) for r in rows if r["replicas"]]
        peak = max(running_counts, default=0)
        peak_at = running_counts.index(peak) if running_counts else 0
        self.out["autoscaling"] = {
            "deployment": watched,
            "rpc": rpc,
            "min_max_replicas": list(bounds(watched)),
            "schedule": [list(s) for s in schedule],
            "tail_s": a.ramp_tail_s,
            "before": waited,
            "sampling": "serve.status() once a second in a thread of this process",
            "status_call_ms": {"p50": pct([d for _, d, _ in sampler.samples], 50), "max": pct([d for _, d, _ in sampler.samples], 100)},
            "running_start": running_counts[0] if running_counts else None,
            "running_peak": peak,
            "running_end": running_counts[-1] if running_counts else None,
            "scaled_up_then_down": bool(running_counts) and peak > running_counts[0] and running_counts[-1] < peak and peak_at < len(running_counts) - 1,
            "timeline": rows,
            "step": record,
        }
        self.log(f"  {watched} RUNNING replicas: start {running_counts[0] if running_counts else None}, peak {peak}, end {running_counts[-1] if running_counts else None}")

    def phase_words(self) -> None:
        """Generate with model_words true, as a second application beside Tailor."""
        from ray import serve

        from serving.app import deployment_settings
        from serving.deployments import CopyWriter, Feedback

        self.log("Generate with copywriting.model_words true (application copywords: CopyWriter + Feedback)")
        settings = self.config.model_dump(mode="json")
        state = Path(self.args.state_dir)
        settings["copywriting"] = {**settings["copywriting"], "model_words": True, "feedback_path": str(state / "feedback_words.sqlite")}
        per = deployment_settings()
        actor = {"num_cpus": self.config.serving.replica_cpus}

        def options(name: str) -> dict:
            chosen = {k: v for k, v in per.get(name, {}).items() if k != "ray_actor_options"}
            return {"ray_actor_options": actor, "max_queued_requests": self.config.serving.max_queued_requests, **chosen}

        started = time.perf_counter()
        app = CopyWriter.options(**options("CopyWriter")).bind(settings, Feedback.options(**options("Feedback")).bind(settings))
        serve.run(app, name="copywords", route_prefix="/copywords")
        deploy_s = round(time.perf_counter() - started, 1)
        self.log(f"  deployed in {deploy_s:g} s")
        section = {"deploy_s": deploy_s, "deadline_s": WORDS_DEADLINE_S, "steps": []}
        self.out["generate_model_words"] = section
        requests = self.generate_list()
        try:
            self.step("words warm-up", "generate", "Generate", "copywords", requests, [(0.5, 4)], timeout_s=WORDS_DEADLINE_S)
            for rate in self.args.words_rates:
                record = self.step(f"words {rate:g}/s", "generate", "Generate", "copywords", requests, [(rate, self.args.words_s)], timeout_s=WORDS_DEADLINE_S)
                record["ok_per_s"] = round(record["result"]["ok"] / self.args.words_s, 2)
                section["steps"].append(record)
                self.step_line("words", record)
                time.sleep(self.args.settle_s)
                if record["ok_share"] < OK_BAR:
                    break
        finally:
            serve.delete("copywords")

    # --- the run -----------------------------------------------------------------------------

    def run(self, phases: list[str]) -> None:
        for phase in ["warm_up", *phases]:
            started = time.perf_counter()
            try:
                getattr(self, "warm_up" if phase == "warm_up" else f"phase_{phase}")()
            except Exception as error:  # noqa: BLE001 - one phase failing leaves the others' figures
                self.errors[phase] = f"{type(error).__name__}: {error}"
                self.log(f"  {phase} failed: {type(error).__name__}: {error}")
                traceback.print_exc()
            self.out.setdefault("phase_seconds", {})[phase] = round(time.perf_counter() - started, 1)


# ---------------------------------------------------------------------------------------------
# Report


def report(console, out: dict, errors: dict) -> None:
    from rich.table import Table

    mode = out["mode"]
    console.print(f"\n[bold]Tailor through Ray Serve's gRPC proxy[/] — mode: [bold]{mode}[/], {out['machine']['cpus']} CPUs, build {out['build']['build_id']}")

    table = Table(title=f"Capacity: highest offered rate with p99 < {P99_BAR_MS:g} ms (Embed: {EMBED_P99_MS:g} ms) and >= {OK_BAR:.0%} OK")
    for column in ("target", "capacity /s", "p50 / p99 at capacity, ms", "steps (rate: pass ✓ / fail ✗)", "Marketing replicas"):
        table.add_column(column)
    rows = [(name if name != "noop" else "do-nothing", out.get(name, {}).get("capacity")) for name in ("noop", "recommend", "embed", "generate")]
    rows += [(f"{'do-nothing' if name == 'noop' else name} (direct ingress)", out.get("direct_ingress", {}).get(name, {}).get("capacity")) for name in ("noop", "recommend")]
    for name, capacity in rows:
        if not capacity:
            continue
        steps = " ".join(f"{s['rate']:g}{'✓' if s['passed'] else '✗'}" for s in capacity["steps"])
        replicas = sorted({running(s.get("replicas_after", {}), out["app_name"], "Marketing") or 0 for s in capacity["steps"]})
        table.add_row(
            name,
            f"{capacity['capacity_rps']:g}",
            f"{fmt_ms(capacity['p50_ms_at_capacity'])} / {fmt_ms(capacity['p99_ms_at_capacity'])}",
            steps,
            ",".join(str(r) for r in replicas),
        )
    console.print(table)
    if "ratio_recommend_to_noop" in out:
        console.print(f"Recommend / do-nothing capacity: [bold]{out['ratio_recommend_to_noop']:.2f}[/]")
    steady = out.get("recommend", {}).get("steady_50")
    if steady:
        console.print(f"Recommend at a steady 50/s: p50 {fmt_ms(steady['p50_ms'])} ms, p99 {fmt_ms(steady['p99_ms'])} ms, OK {steady['ok_share']:.2%}")

    table = Table(title=f"Overload (then recovery at half the capacity); bar: OK/s >= {OVERLOAD_BAR:g} x capacity")
    for column in ("target", "offered /s", "OK /s", "of capacity", "bar", "codes", "RESOURCE_EXHAUSTED p50 ms", "recovery p99 ms", "recovery OK"):
        table.add_column(column)
    for name in ("recommend", "embed", "generate"):
        over = out.get(name, {}).get("overload")
        if not over:
            continue
        table.add_row(
            name,
            f"{over['offered_rps']:g}",
            f"{over['ok_per_s']:.1f}",
            f"{over['ok_share_of_capacity']:.2f}",
            "[green]met[/]" if over["meets_bar"] else "[red]not met[/]",
            codes_text(over["codes"]),
            fmt_ms(over["resource_exhausted_p50_ms"]),
            fmt_ms(over["recovery"]["p99_ms"]),
            f"{(over['recovery']['ok_share'] or 0):.1%}",
        )
    console.print(table)
    for name in ("recommend", "embed", "generate"):
        if name in out and out[name].get("capacity") and not out[name]["capacity"]["capacity_rps"]:
            console.print(f"{name}: no rate met the bar, so no overload step (its rule is relative to the capacity)", highlight=False)

    throughput = out.get("embed_throughput")
    if throughput:
        table = Table(title=f"Embed throughput over gRPC (closed loop) vs in-process embed at batch {throughput['batch_size']}; bar: ratio >= {EMBED_BAR:g}")
        for column in ("texts / request", "best callers", "served texts/s", "in-process texts/s", "ratio", "bar"):
            table.add_column(column)
        for size, served in throughput["served"].items():
            ratio = throughput["ratio"][size]
            table.add_row(size, str(served["best_concurrency"]), f"{served['best_texts_per_s']:.0f}", f"{throughput['baseline_texts_per_s']:.0f}", f"{ratio:.2f}", "[green]met[/]" if ratio >= EMBED_BAR else "[red]not met[/]")
        console.print(table)
        console.print("in-process: " + ", ".join(f"{b['threads']} thread(s) {b['texts_per_s']:.0f} texts/s" for b in throughput["baseline"].values()))

    words = out.get("generate_model_words")
    if words and words.get("steps"):
        table = Table(title=f"Generate with model_words true (deadline {WORDS_DEADLINE_S:g} s)")
        for column in ("offered /s", "OK /s", "OK", "p50 ms", "p99 ms", "codes"):
            table.add_column(column)
        for s in words["steps"]:
            table.add_row(f"{s['rate']:g}", f"{s['ok_per_s']:.2f}", f"{s['ok_share']:.1%}", fmt_ms(s["p50_ms"]), fmt_ms(s["p99_ms"]), codes_text(s["result"]["codes"]))
        console.print(table)

    scaling = out.get("autoscaling")
    if scaling:
        table = Table(title=f"Autoscaling: ramp on {scaling['rpc']} (replicas from serve.status(), once a second)")
        for column in ("t s", "offered", "OK/s", "errors", "p99 ms", scaling["deployment"], "others not at min"):
            table.add_column(column, justify="right")
        for row in scaling["timeline"]:
            replicas = row["replicas"]
            text = str(replicas.get("RUNNING", 0)) + "".join(f" +{count} {state.lower()}" for state, count in replicas.items() if state != "RUNNING")
            table.add_row(
                str(row["t"]),
                "" if row["offered"] is None else str(row["offered"]),
                "" if row["ok"] is None else str(row["ok"]),
                codes_text(row["errors"]) if row["errors"] else "",
                fmt_ms(row["p99_ms"]) if row["p99_ms"] is not None else "",
                text,
                ", ".join(f"{k} {v}" for k, v in row["others_not_at_min"].items()),
            )
        console.print(table)
        console.print(
            f"{scaling['deployment']} RUNNING: start {scaling['running_start']}, peak {scaling['running_peak']}, end {scaling['running_end']}; "
            f"up then down: {scaling['scaled_up_then_down']}; serve.status() took p50 {fmt_ms(scaling['status_call_ms']['p50'])} ms"
        )

    bars = out.get("bars", {})
    console.print("\n[bold]Bars[/]: " + ", ".join(f"{name} {'[green]met[/]' if met else '[red]not met[/]'}" for name, met in bars.items()))
    for note in out.get("notes", []):
        console.print(f"• {note}", markup=False, highlight=False)
    for phase, error in errors.items():
        console.print(f"[red]{phase} failed:[/] {error}", highlight=False)


def bars_of(out: dict) -> dict[str, bool]:
    bars = {}
    if out.get("ratio_recommend_to_noop") is not None:
        bars["recommend_capacity_ge_0.5_of_do_nothing"] = out["ratio_recommend_to_noop"] >= 0.5
    steady = out.get("recommend", {}).get("steady_50") or {}
    if steady.get("p99_ms") is not None:
        bars["recommend_p99_le_30ms_at_50_per_s"] = steady["p99_ms"] <= 30.0
    for name in ("recommend", "embed", "generate"):
        if name in out:  # the phase ran; no overload step means no capacity was found: not met
            bars[f"{name}_overload_ok_ge_{OVERLOAD_BAR:g}_of_capacity"] = bool(out[name].get("overload", {}).get("meets_bar"))
    for size, met in out.get("embed_throughput", {}).get("meets_bar", {}).items():
        bars[f"embed_x{size}_throughput_ratio_ge_{EMBED_BAR:g}"] = met
    return bars


# ---------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=None, help="artifacts folder holding the published build (default: config artifacts_dir)")
    parser.add_argument("--json", type=Path, default=None, help="write settings, every step's result and the figures here")
    parser.add_argument("--quick", action="store_true", help="short steps (5 s), growth x1.5, one bisection: ~6 min after start-up")
    parser.add_argument("--throughput-optimized", action="store_true", help="RAY_SERVE_THROUGHPUT_OPTIMIZED=1 before Ray starts")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    parser.add_argument("--model-words", action="store_true", help="also run Generate with model_words true (a second vLLM engine beside Tailor: ~1.5 min to deploy, ~1-3 min of steps)")
    parser.add_argument("--start-rate", type=float, default=50.0)
    parser.add_argument("--growth", type=float, default=None, help="rate multiplier between search steps (default 1.25; 1.5 with --quick)")
    parser.add_argument("--bisections", type=int, default=None, help="bisection steps after the first failure (default 2; 1 with --quick)")
    parser.add_argument("--max-rate", type=float, default=2000.0, help="the search stops growing past this rate")
    parser.add_argument("--min-rate", type=float, default=2.0, help="a search whose first step fails halves down to this rate")
    parser.add_argument("--generate-shoppers", type=int, default=None, help="shoppers whose Recommend answers make the Generate requests (default 1500; 300 with --quick)")
    parser.add_argument("--fallback-capacity", type=float, default=75.0, help="the ramp's capacity when the Recommend phase found none")
    parser.add_argument("--ramp", default=None, help='the autoscaling ramp instead of the one from the capacity: "20:20,150:35,20:35" (rate:seconds, ...)')
    args = parser.parse_args(argv)
    quick = args.quick
    args.growth = args.growth or (1.5 if quick else 1.25)
    args.bisections = args.bisections if args.bisections is not None else (1 if quick else 2)
    args.generate_shoppers = args.generate_shoppers or (300 if quick else 1500)
    args.step_s = 5.0 if quick else 15.0
    args.side_step_s = 5.0 if quick else 10.0  # Embed and Generate: shorter, so the full run stays near 15-20 min
    args.settle_s = 2.0 if quick else 3.0
    args.steady_s = 10.0 if quick else 30.0
    args.overload_s = 15.0 if quick else 60.0
    args.side_overload_s = 10.0 if quick else 30.0
    args.recovery_s = 10.0
    args.throughput_s = 5.0 if quick else 10.0
    args.baseline_s = 3.0 if quick else 6.0
    args.ramp_tail_s = 20.0 if quick else 30.0
    args.downscale_wait_s = 45.0 if quick else 90.0
    args.words_rates = [0.5, 1.0, 2.0]
    args.words_s = 10.0 if quick else 20.0
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(PHASES)}")
    if not args.model_words and "words" in phases:
        phases.remove("words")
    args.phase_list = [p for p in PHASES if p in phases]
    return args


def serve_constants() -> dict:
    from ray.serve._private import constants

    names = (
        "RAY_SERVE_THROUGHPUT_OPTIMIZED",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS",
        "RAY_SERVE_USE_GRPC_BY_DEFAULT",
        "RAY_SERVE_PROXY_USE_GRPC",
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD",
        "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP",
        "RAY_SERVE_LOG_TO_STDERR",
        "RAY_SERVE_FREEZE_GC_ON_STARTUP",
        "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE",
        "RAY_SERVE_ENABLE_HA_PROXY",
    )
    return {name: getattr(constants, name, None) for name in names}


def grpc_targets() -> list[dict]:
    """Where gRPC is served: the proxy, or with direct ingress each ingress replica's own port
    (Serve controller's target groups; a private API, so best effort)."""
    try:
        import ray
        from ray.serve.context import _get_global_client

        controller = _get_global_client()._controller
        groups = ray.get(controller.get_target_groups.remote(), timeout=10)
        return [
            {
                "protocol": str(getattr(group.protocol, "value", group.protocol)),
                "app": group.app_name,
                "route_prefix": group.route_prefix,
                "targets": [f"{t.ip}:{t.port}" for t in group.targets],
            }
            for group in groups
        ]
    except Exception as error:  # noqa: BLE001
        return [{"error": f"{type(error).__name__}: {error}"[:200]}]


def main(argv=None) -> int:
    args = parse_args(argv)
    # Before anything imports Ray: the raylet, the controller, the proxy and every replica
    # inherit this process's environment.
    if args.throughput_optimized:
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from rich.console import Console

    import ray
    from serving import local_cluster
    from services.artifacts import Artifacts
    from services.config import load_config

    console = Console() if sys.stdout.isatty() else Console(width=160)
    state_dir = tempfile.mkdtemp(prefix="bench_serving_state_")
    args.state_dir = state_dir
    grpc_port, http_port, metrics_port = free_ports(3)
    config = load_config(
        artifacts_dir=args.artifacts.resolve() if args.artifacts else None,
        serving={"grpc_port": grpc_port, "http_port": http_port, "metrics_port": metrics_port},
        # The feedback loop's state in a temporary folder: a load test must not fill the project's.
        copywriting={"feedback_path": Path(state_dir) / "feedback.sqlite", "variant_secret_path": Path(state_dir) / "variant_secret"},
    )
    build = Artifacts.open(config.artifacts_dir, config.index)
    target = f"127.0.0.1:{grpc_port}"
    mode = "throughput_optimized" if args.throughput_optimized else "default"
    out: dict[str, Any] = {
        "benchmark": "bench/bench_serving.py",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "mode": mode,
        "app_name": config.serving.app_name,
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("json", "artifacts")
        } | {"artifacts": str(config.artifacts_dir), "deadline_s": DEADLINE_S, "p99_bar_ms": P99_BAR_MS, "ok_bar": OK_BAR, "overload_bar": OVERLOAD_BAR, "embed_bar": EMBED_BAR,
             "copywriting_model_words": config.copywriting.model_words, "embedding_batch_size": config.embedding.batch_size},
        "machine": {
            "cpus": os.cpu_count(),
            "cpus_allowed": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(),
            "ray": ray.__version__,
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "build": {"build_id": build.build_id, "shoppers": len(build.users), "items": len(build.items)},
        "response_cache": "none in front of any RPC (the proxy and Marketing cache no answers; Recommend and Embed compute every request); "
        "the CopyWriter caches finished copy per (facts, arm, build) for an hour, and Generate requests here are distinct (shopper, item) pairs",
        "notes": [],
    }
    console.print(f"Mode: {mode}; build {build.build_id} ({len(build.users)} shoppers, {len(build.items)} items); phases {', '.join(args.phase_list)}", highlight=False)
    console.print("Response cache: none in front of any RPC; Generate requests are distinct (the CopyWriter's copy cache is not hit until the list repeats).", highlight=False)

    bench: Optional[Bench] = None
    started = time.perf_counter()
    try:
        console.print(f"Starting Tailor (gRPC {target}) ...", highlight=False)
        local_cluster.start(config, quiet=True)
        from clients.client import TailorClient
        from ray import serve

        with TailorClient(target, config.serving.app_name) as client:
            client.wait_ready(60)
        serve.run(_noop_app(), name="noop", route_prefix="/noop")
        out["startup_s"] = round(time.perf_counter() - started, 1)
        out["serve_constants"] = serve_constants()
        out["grpc_targets"] = grpc_targets()
        console.print(f"Up in {out['startup_s']:g} s; Serve: {json.dumps(out['serve_constants'])}", highlight=False)
        time.sleep(5.0)  # start-up's last work settles
        out["idle_cpu"] = idle_cpu(5.0)
        console.print(f"Idle, the cluster takes {out['idle_cpu']['share_of_machine']:.1%} of the machine: {json.dumps(out['idle_cpu']['top'])}", highlight=False)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)

        bench = Bench(args, console, target, config, build)
        bench.out = out
        bench.run(args.phase_list)
    except KeyboardInterrupt:
        out["notes"].append("interrupted")
        console.print("interrupted: reporting what was measured")
    except Exception as error:  # noqa: BLE001 - report what was measured before the failure
        out.setdefault("errors", {})["setup"] = f"{type(error).__name__}: {error}"
        traceback.print_exc()
    finally:
        out["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        out["total_s"] = round(time.perf_counter() - started, 1)
        try:
            local_cluster.stop()
        except Exception as error:  # noqa: BLE001
            console.print(f"stopping the cluster: {error}", highlight=False)
        shutil.rmtree(state_dir, ignore_errors=True)
    errors = {**out.get("errors", {}), **(bench.errors if bench else {})}
    out["errors"] = errors
    out["bars"] = bars_of(out)
    warm = out.get("warm_up", {}).get("noop", {}).get("codes", {})
    out["notes"] += [
        f"mode {mode}: " + ("RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (direct ingress, gRPC between replicas, user code on the main loop); "
                            "the do-nothing app was " + ("reachable" if warm.get("OK") else "NOT reachable") + " on the proxy port"
                            if args.throughput_optimized else "Ray Serve defaults"),
        out["response_cache"],
        "other_cpu_share per step: share of the machine's CPU other processes took (0 = ours alone); steps with a high share are noisy",
    ]
    if not args.model_words:
        out["notes"].append("Generate with model_words true: not run (--model-words runs it: a second vLLM engine beside Tailor)")
    if args.throughput_optimized:
        direct = [f"{g.get('app')} {', '.join(g.get('targets', []))}" for g in out.get("grpc_targets", []) if g.get("protocol") == "gRPC"]
        out["notes"].append("direct-ingress gRPC ports: " + ("; ".join(direct) or "none found"))
    if out.get("autoscaling", {}).get("status_call_ms", {}).get("max") is not None:
        out["notes"].append("the ramp's replica sampler asks the Serve controller from a thread of this process; its cost would show as late starts in the ramp step")
    report(console, out, errors)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        console.print(f"Written to {args.json}", highlight=False)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
