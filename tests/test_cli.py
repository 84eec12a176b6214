"""The `tailor` command line: help, build errors, and recommend against the live application."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from clients.cli import app

runner = CliRunner()


def test_help_explains_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("build", "serve", "recommend", "demo", "prepare-models"):
        assert command in result.output
    for command in ("build", "serve", "recommend"):
        assert runner.invoke(app, [command, "--help"]).exit_code == 0


def test_build_reports_a_bad_file_by_row_and_column(tmp_path):
    data = tmp_path / "shop"
    data.mkdir()
    (data / "items.csv").write_text("item_id,title,price\nA1,Teapot,12.5\nA2,Scarf,3\n")
    (data / "events.csv").write_text(
        "user_id,item_id,event_type,timestamp\nu1,A1,purchase,2024-01-02\nu1,A2,purchased,2024-01-03\n"
    )
    result = runner.invoke(app, ["build", "--data", str(data), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "events.csv" in message and "row 2" in message and "event_type" in message
    assert not (tmp_path / "out" / "current").exists()


def test_recommend_without_a_server_says_how_to_start_one():
    result = runner.invoke(app, ["recommend", "--user", "1", "--address", "127.0.0.1:1"])
    assert result.exit_code == 1 and "tailor serve" in " ".join(result.output.split())


@pytest.mark.cluster
def test_recommend_prints_profile_products_and_copy(live_tailor, sample_artifacts):
    user = sample_artifacts.users.sort_values("purchase_count").iloc[-1]
    result = runner.invoke(
        app, ["recommend", "--user", user["user_id"], "--k", "4", "--channel", "push", "--address", live_tailor.address]
    )
    assert result.exit_code == 0, result.output
    assert f"Customer {user['user_id']}" in result.output
    assert f"{user['purchase_count']} purchases" in result.output
    assert "copy for" in result.output
    assert result.output.count(" GBP ") >= 4 or result.output.count("GBP") >= 4


@pytest.mark.cluster
def test_recommend_unknown_user_exits_with_the_status(live_tailor):
    result = runner.invoke(app, ["recommend", "--user", "nobody", "--address", live_tailor.address])
    assert result.exit_code == 1 and "NOT_FOUND" in result.output
