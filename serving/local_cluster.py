"""Start and stop Tailor on a local Ray instance with Ray Serve's gRPC proxy."""

from __future__ import annotations

import logging
import os
import socket

from services.config import TailorConfig

# Ray's object store would otherwise take 30% of RAM as shared memory; Tailor passes small protos.
OBJECT_STORE_BYTES = 512 * 1024**2


def free_ports(n: int) -> list[int]:
    """n distinct free local ports (all held open until every one is chosen), for a local run
    beside others: tests, benchmarks."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start(config: TailorConfig, quiet: bool = False) -> None:
    """Start Ray, Serve's proxies and the Tailor application; return once every replica is up."""
    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions, HTTPOptions

    from serving.app import GRPC_SERVICER_FUNCTIONS, build_app
    from services.artifacts import Artifacts

    # Fail now, clearly, if nothing is published or the build is of a format this code cannot read.
    Artifacts.open(config.artifacts_dir, config.index)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if quiet:  # Serve's start-up chatter; warnings and errors still show
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    ray.init(
        address="local",  # always a Ray of our own: never attach to (and later shut down) someone else's
        include_dashboard=False,
        # Ray's, Serve's and Tailor's Prometheus metrics on a fixed port (README, "Metrics").
        _metrics_export_port=config.serving.metrics_port,
        object_store_memory=OBJECT_STORE_BYTES,
        log_to_driver=not quiet,
        logging_level="WARNING",
        ignore_reinit_error=True,
    )
    serve.start(
        http_options=HTTPOptions(host=config.serving.host, port=config.serving.http_port),
        grpc_options=gRPCOptions(
            port=config.serving.grpc_port,
            grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS,
            request_timeout_s=config.serving.request_timeout_s,
        ),
    )
    serve.run(build_app(config), name=config.serving.app_name, route_prefix=config.serving.route_prefix)


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
