"""What an audit leaves in its folder: label_issues.jsonl, duplicates.jsonl, audit.json,
summary.md / summary.html and, with --fix, cleaned.csv that `train --data` reads."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sentitune import files
from sentitune.auditing.rows import AuditRows
from sentitune.evaluation.report import Block, write_document


def label_cell(value: str | list[str]) -> str:
    """A label as a data file holds it: a name, or a JSON list for several labels (and for
    a single name holding ',' or '|', which would otherwise read as several)."""
    if isinstance(value, list) or any(sep in value for sep in ",|"):
        return json.dumps(list(value) if isinstance(value, list) else [value])
    return value


def cleaned_frame(rows: AuditRows, issues: list[dict], fix: str) -> pd.DataFrame:
    """The audited rows with their issues dropped or relabelled, labels as names."""
    labels = [rows.names_of(v) for v in rows.frame["label"]]
    frame = pd.DataFrame({"text": rows.frame["text"], "label": labels})
    flagged = [issue["row"] for issue in issues]
    if fix == "drop":
        frame = frame.drop(index=flagged)
    else:
        for issue in issues:
            frame.at[issue["row"], "label"] = issue["suggested_label"]
    return frame.assign(label=[label_cell(v) for v in frame["label"]]).reset_index(drop=True)


def _text_label(value) -> str:
    return ", ".join(value) if isinstance(value, list) else str(value)


def _summary_blocks(report: dict, issues: list[dict], duplicates: list[dict],
                    top: int) -> list[Block]:
    counts = report["counts"]
    blocks: list[Block] = [
        ("h1", f"Label audit of {report['source']}"),
        ("table", ["", "Value"], [[k, str(v)] for k, v in (
            ("rows", counts["rows"]), ("task", report["task"]), ("labels",
             ", ".join(report["labels"])), ("mode", report["mode"]), ("model", report["model"]),
            ("folds", report["folds"]),
            ("out-of-fold accuracy", f"{report['out_of_fold_accuracy']:.3f}"),
            ("suspected label issues", f"{counts['label_issues']} "
                                       f"({counts['label_issues'] / counts['rows']:.1%})"),
            ("conflicting exact duplicates", counts["exact_duplicates"]),
            ("conflicting near duplicates", counts["near_duplicates"]))]),
        ("h2", "Suspected label issues"),
        ("p", "Ranked by cleanlab (self-confidence of the given label under out-of-fold "
              f"probabilities); the first {min(top, len(issues))} of {len(issues)}."),
        ("table", ["Row", "Text", "Given", "Suggested", "Confidence"],
         [[str(i["row"]), i["text"], _text_label(i["given_label"]),
           _text_label(i["suggested_label"]), f"{i['confidence']:.3f}"] for i in issues[:top]]),
    ]
    if duplicates:
        blocks += [("h2", "Duplicates with disagreeing labels"),
                   ("table", ["Kind", "Similarity", "Rows", "Texts", "Labels"],
                    [[d["kind"], f"{d['similarity']:.3f}", ", ".join(map(str, d["rows"])),
                      " / ".join(d["texts"]), " / ".join(map(_text_label, d["labels"]))]
                     for d in duplicates[:top]])]
    return blocks


def write_audit(output: Path, rows: AuditRows, report: dict, issues: list[dict],
                duplicates: list[dict], fix: str | None, top: int) -> dict[str, Path]:
    """Every output file, each written atomically; returns them by name."""
    written = {"label_issues": files.write_jsonl(output / "label_issues.jsonl", issues),
               "duplicates": files.write_jsonl(output / "duplicates.jsonl", duplicates)}
    if fix:
        with files.atomic_path(output / "cleaned.csv") as partial:
            cleaned_frame(rows, issues, fix).to_csv(partial, index=False)
        written["cleaned"] = output / "cleaned.csv"
    written["summary_md"], written["summary_html"] = write_document(
        output, _summary_blocks(report, issues, duplicates, top), stem="summary")
    written["audit"] = files.write_json(output / "audit.json", report | {
        "files": {k: str(v) for k, v in written.items()}})
    return written
