"""`tailor evaluate` (recommendation quality on a time split, beside the baselines) and
`tailor copy-eval` (copy for a campaign's worth of shoppers, measured)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table


def evaluate_command(
    data: Optional[Path] = typer.Option(None, "--data", help="Shop data, as for `build` (default: config data)."),
    cutoff: Optional[str] = typer.Option(None, "--cutoff", help="ISO date: build on events before it, score on purchases on/after it (default: 30 days before the last event)."),
    k: int = typer.Option(10, "--k", min=1, help="List length scored (NDCG@k, Recall@k, MAP@k)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON to this file."),
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="Folder for the temporary Tailor build (default: the system's temporary folder)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML configuration file (default: $TAILOR_CONFIG, else built-in defaults)."),
) -> None:
    """Measure recommendation quality on a time split: Tailor beside popularity, recent popularity, repeat purchase, item-kNN, ANN only and ALS."""
    from clients.cli import config_for, console, fail, progress_bars
    from services.errors import DataFileError
    from services.evaluation.harness import METRICS, EvaluationError
    from services.evaluation.harness import evaluate as run_evaluation

    settings = config_for(config, data=data)
    if cutoff is not None:
        try:
            datetime.fromisoformat(cutoff)
        except ValueError:
            fail(f"--cutoff {cutoff!r} is not an ISO date (YYYY-MM-DD)", 2)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    with progress_bars(24) as report:
        try:
            result = run_evaluation(settings.data, cutoff, k, settings, report, workdir=workdir)
        except (EvaluationError, DataFileError) as error:
            fail(str(error), 2)
    show_evaluation(result, tuple(result["methods"]), METRICS)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"Results written to {json_out}")


def copy_eval_command(
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", help="Artifacts folder holding the published build (default: config artifacts_dir)."),
    shoppers: int = typer.Option(200, "--shoppers", min=2, help="Shoppers of the build to write a campaign's copy for."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the measures as JSON to this file."),
    variants_out: Optional[Path] = typer.Option(None, "--variants", help="Write every delivered variant, one JSON a line."),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="Shoppers in flight at once (the engine batches their requests)."),
    seed: int = typer.Option(0, "--seed", help="Which shoppers, and the shuffled pairing."),
    model_words: Optional[bool] = typer.Option(None, "--model-words/--no-model-words", help="Override copywriting.model_words for this run."),
    shuffled: bool = typer.Option(False, "--interests-shuffled/--no-interests-shuffled", help="Also write every shopper's words again with another shopper's interests (what the interests add; doubles the engine work)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML configuration file (default: $TAILOR_CONFIG, else built-in defaults)."),
) -> None:
    """Copy for N shoppers over every channel and both languages, measured: checks' pass rate, fact accuracy, sources, free words, diversity, personalization."""
    from clients.cli import config_for, fail
    from clients.copy_eval import copy_eval as run_copy_eval
    from services.errors import TailorError

    settings = config_for(config, artifacts_dir=artifacts)
    if model_words is not None:
        settings = settings.model_copy(update={"copywriting": settings.copywriting.model_copy(update={"model_words": model_words})})
    try:
        run_copy_eval(settings, settings.artifacts_dir, shoppers, json_out, variants_out, concurrency, seed, shuffled)
    except TailorError as error:
        fail(str(error), 2)


def show_evaluation(result: dict, methods: tuple[str, ...], metrics: tuple[str, ...]) -> None:
    from clients.cli import console

    k = result["k"]
    names = {"ndcg": f"NDCG@{k}", "recall": f"Recall@{k}", "map": f"MAP@{k}", "coverage": "coverage", "diversity": "diversity"}
    table = Table(
        title=f"{result['shoppers_scored']:,} shoppers scored on what they bought from {result['cutoff'][:10]} on",
        caption=f"best per metric in bold green; {result['seconds']['total']:.0f} s",
    )
    table.add_column("method", no_wrap=True)
    for metric in metrics:
        table.add_column(names[metric], justify="right", no_wrap=True)
    best = {metric: max(result["methods"][m][metric] for m in methods) for metric in metrics}
    for method in methods:
        scores = result["methods"][method]
        table.add_row(method, *(f"[bold green]{scores[m]:.4f}[/]" if scores[m] == best[m] else f"{scores[m]:.4f}" for m in metrics))
    console.print(table)
    validation = result["validation"]
    tuned = Table(
        title=f"Settings chosen by NDCG@{k} on {validation['shoppers']:,} shoppers "
        f"(trained before {validation['cutoff'][:10]}, scored up to {result['cutoff'][:10]})",
    )
    tuned.add_column("method", no_wrap=True)
    tuned.add_column("settings", overflow="fold")
    tuned.add_column("tried", justify="right")
    tuned.add_column(f"validation NDCG@{k}", justify="right")
    for method in methods:
        params = dict(result["methods"][method].get("params", {}))
        if not params or method == "tailor":
            continue
        score, tried = params.pop("validation_ndcg", None), params.pop("settings_tried", 0)
        tuned.add_row(
            method,
            ", ".join(f"{key}={value}" for key, value in params.items()) or "(nothing to tune)",
            str(tried),
            "-" if score is None else f"{score:.4f}",
        )
    console.print(tuned)
    ranker = result["methods"]["tailor"].get("params", {})
    if ranker:
        how = f"validation NDCG@10 {ranker['ranker_validation_ndcg_at_10']:.4f} at its internal cut" if "ranker_validation_ndcg_at_10" in ranker else ranker.get("why", "")
        console.print(f"Tailor's build ranked with {ranker['ranker']} ({how}).")
    versus = result.get("tailor_vs_best_other", {})
    if versus.get("ndcg_ratio") is not None:
        console.print(
            f"Tailor's NDCG@{k} is {versus['ndcg_ratio']:.3f}× the best other method's ({versus['method']}); "
            f"diversity weight {versus['diversity_weight']:g}."
        )
