"""The `tailor` command line: help, build errors, and recommend against the live application."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clients.cli import app

runner = CliRunner()


def test_help_explains_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("build", "serve", "recommend", "demo", "prepare-models", "publish", "rollback", "builds", "loadtest", "k8s"):
        assert command in result.output
    for command in ("build", "serve", "recommend", "publish", "rollback", "loadtest"):
        assert runner.invoke(app, [command, "--help"]).exit_code == 0


def test_publish_and_rollback_switch_between_kept_builds(tmp_path, sample_build):
    import shutil

    from services.artifacts import BUILDS, current_build_dir, publish

    # Two kept builds (copies of the session's build under other ids) and a history.
    artifacts = tmp_path / "artifacts"
    first, second = "20260101T000000Z-aaaaaaaa-0001", "20260102T000000Z-bbbbbbbb-0002"
    for build_id in (first, second):
        shutil.copytree(sample_build.path, artifacts / BUILDS / build_id)
        manifest = artifacts / BUILDS / build_id / "manifest.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "build_id": build_id}))
    publish(artifacts, artifacts / BUILDS / first)

    listed = runner.invoke(app, ["builds", "--artifacts", str(artifacts)])
    assert listed.exit_code == 0 and first in listed.output and second in listed.output
    assert runner.invoke(app, ["publish", second, "--artifacts", str(artifacts)]).exit_code == 0
    assert current_build_dir(artifacts).name == second
    back = runner.invoke(app, ["rollback", "--artifacts", str(artifacts)])
    assert back.exit_code == 0 and f"from {second} to {first}" in " ".join(back.output.split())
    assert current_build_dir(artifacts).name == first
    # A second rollback returns to the build left by the first: rollback is reversible.
    assert runner.invoke(app, ["rollback", "--artifacts", str(artifacts)]).exit_code == 0
    assert current_build_dir(artifacts).name == second

    missing = runner.invoke(app, ["publish", "x" * 5000, "--artifacts", str(artifacts)])
    assert missing.exit_code == 2 and "no build" in missing.output and len(missing.output) < 600
    assert current_build_dir(artifacts).name == second


def test_rollback_with_nothing_earlier_says_so(tmp_path, sample_build):
    import shutil

    from services.artifacts import BUILDS, publish

    artifacts = tmp_path / "artifacts"
    shutil.copytree(sample_build.path, artifacts / BUILDS / "only")
    publish(artifacts, artifacts / BUILDS / "only")
    result = runner.invoke(app, ["rollback", "--artifacts", str(artifacts)])
    assert result.exit_code == 2 and "no earlier build" in result.output


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
