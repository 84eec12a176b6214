"""The copy checks against tests/data/copy_labelled.jsonl: variants whose model-written words a
person judged by reading ("send" or "reject"). Prints the checks' precision and recall, and
the sense threshold sweep the configured `copywriting.sense_threshold` was chosen from.

    .venv/bin/python bench/copy_checks_labelled.py [--json OUT]

"Reject" is the positive class: recall is the share of the variants a reader rejects that the
checks reject too; precision the share of the checks' rejections the reader agrees with. The
figure that matters to a shop is the precision of what the checks let through ("send").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LABELLED = ROOT / "tests" / "data" / "copy_labelled.jsonl"


def main() -> None:
    from services.evaluation.labelled_checks import load, scores, verdicts

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from services.config import load_config
    from services.copywriting.hook_checks import CatalogNames
    from services.recommend.embedding import TextEmbedder

    import pandas as pd

    config = load_config()
    rows = load(LABELLED)
    labels = [row["label"] == "reject" for row in rows]
    known = TextEmbedder(config).known_words()
    titles = pd.read_parquet(ROOT / "tests" / "data" / "copy_labelled_catalog.parquet")["title"]
    catalog = CatalogNames(titles)
    sweep = {}
    for threshold in [round(0.10 + 0.025 * i, 3) for i in range(13)]:
        sweep[threshold] = scores(labels, verdicts(rows, threshold, known, catalog))
    configured = config.copywriting.sense_threshold
    at = scores(labels, verdicts(rows, configured, known, catalog))
    print(f"{len(rows)} labelled variants: {sum(labels)} rejected by the reader, {len(rows) - sum(labels)} sent")
    print(f"{'threshold':>9} {'rej P':>6} {'rej R':>6} {'send P':>6} {'send R':>6} {'sent':>5}")
    for t, s in sweep.items():
        mark = " <- configured" if abs(t - configured) < 1e-9 else ""
        print(f"{t:9.3f} {s['reject_precision']:6.3f} {s['reject_recall']:6.3f} {s['send_precision']:6.3f} {s['send_recall']:6.3f} {s['sent']:5d}{mark}")
    print(f"at sense_threshold {configured}: reject precision {at['reject_precision']:.3f}, recall {at['reject_recall']:.3f}; "
          f"what passes is good {at['send_precision']:.3f} of the time")
    if args.json:
        args.json.write_text(json.dumps({"configured": configured, "at_configured": at, "sweep": sweep}, indent=2))


if __name__ == "__main__":
    main()
