"""The copy checks measured on a labelled set: variants whose model-written words a person
judged by reading (tests/data/copy_labelled.jsonl). "Reject" is the positive class."""

from __future__ import annotations

import json
from pathlib import Path

def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def verdicts(rows: list[dict], threshold: float, known: frozenset[str] | None, catalog) -> list[bool]:
    """True where the checks reject the variant (its free words, or the copy as laid out)."""
    from services.copywriting.checks import check_copy
    from services.copywriting.facts import Copy, CopyFacts
    from services.copywriting.hook_checks import hook_problems

    out = []
    for row in rows:
        f = row["facts"]
        facts = CopyFacts(item_id=f["item_id"], title=f["title"], price=f["price"], currency=f["currency"], category=f["kind"],
                          interests=tuple(f["interests"]), reason=f["reason"], channel="push", language="en")
        problems = hook_problems(row["model_words"], f["title"], catalog, row["sense"], threshold, "",
                                 [f["reason"], f["kind"], *f["interests"]], known)
        copy = Copy(**row["copy"])
        out.append(bool(problems or check_copy(copy, facts)))
    return out


def scores(labels: list[bool], predicted: list[bool]) -> dict:
    tp = sum(p and t for p, t in zip(predicted, labels))
    fp = sum(p and not t for p, t in zip(predicted, labels))
    fn = sum(t and not p for p, t in zip(predicted, labels))
    tn = sum(not p and not t for p, t in zip(predicted, labels))
    return {
        "reject_precision": tp / (tp + fp) if tp + fp else float("nan"),
        "reject_recall": tp / (tp + fn) if tp + fn else float("nan"),
        "send_precision": tn / (tn + fn) if tn + fn else float("nan"),
        "send_recall": tn / (tn + fp) if tn + fp else float("nan"),
        "sent": tn + fn,
        "counts": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }
