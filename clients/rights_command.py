"""`tailor forget` and `tailor personalization`: a shopper's rights through the running Tailor
(ForgetUser, SetPersonalization over gRPC), so every replica hears of them at once."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def forget_command(
    user: str = typer.Option(..., "--user", help="The shopper to forget."),
    address: Optional[str] = typer.Option(None, "--address", help="host:port of the gRPC proxy (default from config)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML configuration file."),
) -> None:
    """Forget a shopper everywhere (ForgetUser): serving, the bandit, campaign outboxes and every later build."""
    import grpc

    from clients.cli import config_for, console, fail, tailor_client

    settings = config_for(config)
    with tailor_client(settings, address) as client:
        try:
            client.forget_user(user)
        except grpc.RpcError as error:
            fail(f"{error.code().name}: {error.details()}")
    console.print(f"forgot shopper {user!r}: every RPC now answers NOT_FOUND for them, and later builds leave them out")


def personalization_command(
    user: str = typer.Option(..., "--user", help="The shopper."),
    off: bool = typer.Option(False, "--off", help="Turn personalization off (popular and trending lists, copy without profile tags)."),
    on: bool = typer.Option(False, "--on", help="Turn it back on."),
    address: Optional[str] = typer.Option(None, "--address", help="host:port of the gRPC proxy (default from config)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML configuration file."),
) -> None:
    """Turn a shopper's personalization off or on (SetPersonalization)."""
    import grpc

    from clients.cli import config_for, console, fail, tailor_client

    if off == on:
        fail("give --off or --on", 2)
    settings = config_for(config)
    with tailor_client(settings, address) as client:
        try:
            client.set_personalization(user, on)
        except grpc.RpcError as error:
            fail(f"{error.code().name}: {error.details()}")
    console.print(f"personalization {'on' if on else 'off'} for shopper {user!r}")
