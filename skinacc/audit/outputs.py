"""What an audit leaves: ``audit.json``, the CSV tables, PNG grids of the worst duplicate groups and
suspect labels, and the summary printed at the end."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

from skinacc.rundir import atomic_write, write_json

__all__ = ["summary_text", "write_audit"]

logger = logging.getLogger(__name__)


def write_audit(
    report: dict[str, Any], tables: dict[str, Any], out_dir: str | os.PathLike, max_grid: int = 12
) -> list[Path]:
    """Write ``audit.json``, ``duplicates.csv``, ``label_issues.csv``, ``quality.csv`` and PNG grids of the
    worst duplicate groups and the top suspect labels, each atomically. Returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, names = tables["rows"], tables["class_names"]
    written = []
    written.append(write_json(out / "audit.json", report))
    path = out / "duplicates.csv"
    with atomic_write(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "group",
                "kind",
                "crosses_splits",
                "conflicting_labels",
                "min_similarity",
                "sample_id",
                "split",
                "label",
                "path",
            ]
        )
        for g in tables["duplicates"]:
            for m in g["members"]:
                w.writerow(
                    [g["group"], g["kind"], g["crosses_splits"], g["conflicting_labels"], f"{g['min_similarity']:.4f}",
                     rows["sample_id"][m], rows["split"][m], names[rows["label"][m]], rows["path"][m]]
                )  # fmt: skip
    written.append(path)
    path = out / "label_issues.csv"
    keys = [
        "rank",
        "sample_id",
        "split",
        "path",
        "given_label",
        "suggested_label",
        "label_quality",
        "suggested_prob",
    ]
    with atomic_write(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(tables["label_issues"])
    written.append(path)
    path = out / "quality.csv"
    with atomic_write(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(["sample_id", "split", "path", "issues"])
        for q in tables["quality"]:
            r = q["row"]
            w.writerow([rows["sample_id"][r], rows["split"][r], rows["path"][r], " ".join(q["issues"])])
    written.append(path)
    from skinacc.plots import plot_image_grid

    worst = sorted(
        tables["duplicates"],
        key=lambda g: (not g["crosses_splits"], not g["conflicting_labels"], -len(g["members"])),
    )[:max_grid]
    if worst:
        cells = [
            [(rows["image"][m], f"{rows['split'][m]}\n{names[rows['label'][m]]}") for m in g["members"][:6]]
            for g in worst
        ]
        written.append(
            plot_image_grid(
                cells, "Duplicate groups (split leaks and label conflicts first)", out / "duplicates.png"
            )
        )
    top = tables["label_issues"][: max_grid * 2]
    if top:
        cells = [
            [
                (
                    rows["image"][i["row"]],
                    f"{i['given_label']}\n-> {i['suggested_label']} ({i['suggested_prob']:.2f})",
                )
            ]
            for i in top
        ]
        written.append(
            plot_image_grid(cells, "Suspect labels: given -> suggested", out / "label_issues.png", columns=6)
        )
    return written


def summary_text(report: dict[str, Any]) -> str:
    """The one-screen console summary."""
    lines = [
        f"audit of {report['num_images']} images in {len(report['class_names'])} classes from {report['source']}"
        + (f" ({report['root']})" if report.get("root") else ""),
        "splits: " + ", ".join(f"{k} {v}" for k, v in report["split_sizes"].items()),
    ]
    d = report.get("duplicates")
    if d:
        lk, lc = d["leakage"], d["label_conflicts"]
        lines += [
            f"duplicates: {d['groups']} groups ({d['exact_pairs']} exact pairs), {d['images_in_groups']} images, "
            f"{d['copies']} of them copies",
            f"  LEAKAGE: {lk['groups_crossing_splits']} groups cross splits ({lk['images']} images); "
            f"{lk['test_images_with_a_copy_in_train']} test images have a copy in train",
            f"  label conflicts: {lc['groups']} groups carry two labels ({lc['images']} images)",
        ]
        if d["unreadable"]:
            lines.append(f"  {len(d['unreadable'])} images could not be read")
    width = max(len(c) for c in report["per_class"])
    lines.append(f"  {'class':<{width}s}  images  copies")
    lines += [f"  {c:<{width}s}  {v['images']:6d}  {v['copies']:6d}" for c, v in report["per_class"].items()]
    li = report.get("label_issues")
    if li:
        lines.append(
            f"suspect labels: {li['suspects']} of {li['images_scored']} ({li['method']}; out-of-fold accuracy "
            f"{li['out_of_fold_accuracy']:.3f})"
        )
    q = report.get("quality")
    if isinstance(q, dict):
        lines.append("quality flags: " + (", ".join(f"{k} {v}" for k, v in q.items() if v) or "none"))
    elif q:
        lines.append(f"quality flags: {q}")
    lines.append(f"took {report['timing']['total_s']:.1f} s")
    return "\n".join(lines)
