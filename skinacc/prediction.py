"""Predictions for image files at any scale, written as they come: a table, CSV, JSON Lines or JSON, and
Grad-CAM overlays.

Probabilities use the model's stored test-time augmentation and calibrated temperature (written by
``skinacc train --tta ... --calibrate``) unless ``--tta``/``--temperature`` say otherwise. Inputs are files,
folders (searched recursively) or glob patterns. Any number of images: all cores decode
(``--num_workers``), a progress bar counts them, ``.csv``/``.jsonl`` results are written batch by batch,
so memory stays flat, and ``--resume`` continues a stopped run where its file ends.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from skinacc.artifact import load_model
from skinacc.clinical.decision import DISCLAIMER
from skinacc.config.inference import PredictArguments
from skinacc.console import disable_progress_bars
from skinacc.data import default_num_workers
from skinacc.inference import collect_images, iter_predictions
from skinacc.rundir import atomic_write

__all__ = ["SHOW_LIMIT", "ResultWriter", "explain_results", "predict_files", "read_done"]


def predict_files(args: PredictArguments) -> list[dict]:
    """Predict every image ``args.inputs`` names and write the results (see the module docstring).

    Returns:
        The results kept (every one for ``.json``/``--explain``/no ``--output``; up to 200 otherwise).
    """
    if args.disable_tqdm:
        disable_progress_bars()
    files = collect_images(args.inputs)
    m = load_model(args.model, args.device)
    tta = args.tta or m.tta
    temperature = args.temperature or m.temperature
    workers = default_num_workers(args.num_workers)
    print(
        f"model {args.model}: {len(m.label_names)} classes, tta {tta}, temperature {temperature:.3f}; "
        f"{len(files)} images, {workers} decoding processes"
    )
    out = Path(args.output) if args.output else None
    rules = m.decision if m.decision else None
    columns = [
        "path",
        *[c for i in range(args.top_k) for c in (f"label_{i + 1}", f"prob_{i + 1}")],
        *decision_columns(rules),
        "error",
        *(["explanation"] if args.explain else []),
    ]
    # Large inputs: results go to a .csv/.jsonl file batch by batch and are not kept; a run that
    # stopped is continued with --resume. --explain and .json need them all first.
    incremental = out is not None and out.suffix.lower() in (".csv", ".jsonl") and not args.explain
    done: set[str] = set()
    if incremental and args.resume and out.is_file():
        done = read_done(out)
        print(f"--resume: {len(done)} images already in {out}; predicting the other {len(files) - len(done)}")
    todo = [f for f in files if f not in done] if done else files
    kept: list[dict] = []
    keep = not incremental or len(todo) <= SHOW_LIMIT
    writer = ResultWriter(out, columns, args.top_k, append=bool(done)) if incremental else None
    n_err = 0
    try:
        for batch in iter_predictions(
            m.model, todo, m.label_names, m.data_cfg, args.batch_size, args.top_k, args.device,
            tta=tta, temperature=temperature, workers=workers, total=len(todo),
            channels_last=args.channels_last, decision=rules,
        ):  # fmt: skip
            n_err += sum("error" in r for r in batch)
            if writer:
                writer.write(batch)
            if keep:
                kept.extend(batch)
    finally:
        if writer:
            writer.close()
    if args.explain:
        default_dir = out.parent / "explanations" if out else Path("explanations")
        written = explain_results(kept, m, Path(args.explain_dir or default_dir), args, temperature)
        print(f"wrote {written} Grad-CAM overlays to {args.explain_dir or default_dir}")
    if kept and len(kept) <= SHOW_LIMIT:
        width = min(60, max(len(r["path"]) for r in kept))
        for r in kept:
            shown = r["path"] if len(r["path"]) <= width else "..." + r["path"][-width + 3 :]
            tops = r.get("error") or "  ".join(f"{t['label']} {t['prob']:.3f}" for t in r["top_k"])
            print(f"{shown:<{width}s}  {tops}{decision_text(r.get('decision'))}")
    print(f"predicted {len(todo) - n_err} images, {n_err} could not be decoded")
    if rules:
        print(
            "decision rules (chosen on validation, stored with the model):\n  "
            + "\n  ".join(rules.describe())
        )
        print(DISCLAIMER)
    if out is not None and not incremental:
        ResultWriter.write_all(out, columns, args.top_k, kept)
    if out is not None:
        print(f"wrote {out}")
    return kept


#: Print a table (and return the results) only for this many images or fewer.
SHOW_LIMIT = 200


def read_done(out: Path) -> set[str]:
    """Paths already predicted in a .csv/.jsonl output; a line cut by a crash is removed first."""
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with out.open("r+b") as f:  # drop the half-written last line
            f.truncate(cut)
    if out.suffix.lower() == ".jsonl":
        with out.open() as f:
            return {json.loads(line)["path"] for line in f if line.strip()}
    with out.open(newline="") as f:
        return {row["path"] for row in csv.DictReader(f)}


def decision_columns(rules) -> list[str]:
    """CSV columns of a model's decision rules: P(group) and the decision per operating point, and
    ``uncertain`` with an abstention rule."""
    if not rules:
        return []
    cols = [c for p in rules.operating_points for c in (f"p_{p.group}", f"{p.group}_decision")]
    return cols + (["uncertain"] if rules.abstention else [])


def _decision_cells(d: dict | None, columns_wanted: int) -> list[str]:
    if not d:
        return [""] * columns_wanted
    cells = [c for k, v in d.items() if k != "uncertain" for c in (f"{v['probability']:.6f}", v["decision"])]
    if "uncertain" in d:
        cells.append(str(int(d["uncertain"])))
    return cells


def decision_text(d: dict | None) -> str:
    """The decisions of one result as console text ("  | malignant 0.62: refer | uncertain: refer")."""
    if not d:
        return ""
    parts = [f"{k} {v['probability']:.2f}: {v['decision']}" for k, v in d.items() if k != "uncertain"]
    if d.get("uncertain"):
        parts.append("uncertain: refer")
    return "  | " + " | ".join(parts)


class ResultWriter:
    """Appends results to a .csv or .jsonl file as they come (flushed per batch)."""

    def __init__(self, out: Path, columns: list[str], top_k: int, append: bool):
        out.parent.mkdir(parents=True, exist_ok=True)
        self.n_decision = _n_decision(columns)
        self.jsonl = out.suffix.lower() == ".jsonl"
        self.top_k = top_k
        self.f = out.open("a" if append else "w", newline="")
        self.csv = None if self.jsonl else csv.writer(self.f)
        if self.csv is not None and not append:
            self.csv.writerow(columns)

    @staticmethod
    def row(r: dict, top_k: int, explain: bool, n_decision: int = 0) -> list[str]:
        tops = [c for t in r.get("top_k", []) for c in (t["label"], f"{t['prob']:.6f}")]
        return [
            r["path"],
            *tops,
            *[""] * (2 * top_k - len(tops)),
            *(_decision_cells(r.get("decision"), n_decision) if n_decision else []),
            r.get("error", ""),
            *([r.get("explanation", "")] if explain else []),
        ]

    def write(self, batch: list[dict]) -> None:
        if self.jsonl:
            self.f.write("".join(json.dumps(r) + "\n" for r in batch))
        else:
            self.csv.writerows(self.row(r, self.top_k, False, self.n_decision) for r in batch)
        self.f.flush()

    def close(self) -> None:
        self.f.close()

    @staticmethod
    def write_all(out: Path, columns: list[str], top_k: int, results: list[dict]) -> None:
        """Write every result at once (.json, or with --explain), atomically."""
        suffix = out.suffix.lower()
        with atomic_write(out, newline="") as f:
            if suffix == ".json":
                f.write(json.dumps(results, indent=2))
            elif suffix == ".jsonl":
                f.write("".join(json.dumps(r) + "\n" for r in results))
            else:
                w = csv.writer(f)
                w.writerow(columns)
                n = _n_decision(columns)
                w.writerows(ResultWriter.row(r, top_k, "explanation" in columns, n) for r in results)


def _n_decision(columns: list[str]) -> int:
    return sum(c.startswith("p_") or c.endswith("_decision") or c == "uncertain" for c in columns)


def explain_results(results: list[dict], m, out_dir: Path, args: PredictArguments, temperature: float) -> int:
    """Grad-CAM overlays of the top-1 class for every decoded image; adds ``explanation`` (the PNG path)
    to its result. Returns how many were written."""
    from PIL import Image

    from skinacc.explain import Explainer, explain_sources

    explainer = Explainer(m.model, m.data_cfg, args.cam_layer, args.cam_method, temperature)
    ok = [(i, r) for i, r in enumerate(results) if "top_k" in r]
    targets = [m.label_names.index(r["top_k"][0]["label"]) for _, r in ok]
    maps = explain_sources(explainer, [r["path"] for _, r in ok], targets, args.batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    for (i, r), e in zip(ok, maps):
        if "error" in e:  # the file changed between prediction and explanation
            r["explanation_error"] = e["error"]
            continue
        # The index keeps names unique when two folders hold files of one name.
        path = out_dir / f"{i:05d}_{Path(r['path']).stem}_cam.png"
        Image.fromarray(e["overlay"]).save(path)
        r["explanation"] = str(path)
    return sum("explanation" in r for r in results)
