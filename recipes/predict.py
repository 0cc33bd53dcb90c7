"""Predict skin-lesion classes for images: top-k labels with probabilities.

    python recipes/predict.py --model outputs/demo --inputs photo.jpg more_photos/ "batch/*.png" --top_k 3
    python recipes/predict.py --model hf-hub:my-org/skinacc-b3 --inputs scans/ --output predictions.json
    python recipes/predict.py --model outputs/dermoscopy --inputs photo.jpg --tta dihedral
    python recipes/predict.py --model outputs/demo --inputs photos/ --output preds.csv --explain  # + Grad-CAM PNGs
    python recipes/predict.py --model outputs/dermoscopy --inputs /data/archive --output preds.csv --resume  # 100k+ images

Probabilities use the model's stored test-time augmentation and calibrated temperature (written by
``train.py --tta ... --calibrate``) unless --tta/--temperature say otherwise.

Inputs are files, folders (searched recursively) or glob patterns. Prints a table (up to 200 images)
and writes CSV, JSON Lines or JSON (by the --output suffix). Any number of images: all cores decode
(--num_workers), a progress bar counts them, .csv/.jsonl results are written batch by batch, so memory
stays flat, and --resume continues a stopped run where its file ends. ``--explain`` also writes a Grad-CAM overlay per image (the view the
model classified, heat map of the top-1 class) to --explain_dir, named in the results. Not a medical
device.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from _cli import parse_args, run

from skinacc.console import disable_progress_bars
from skinacc.data import default_num_workers
from skinacc.explain import CAM_METHODS
from skinacc.hub import load_model
from skinacc.inference import collect_images, iter_predictions


@dataclass
class PredictArguments:
    """What to predict and where the results go."""

    model: str = field(
        default="outputs/demo",
        metadata={"help": "A skinacc run dir, a timm folder, local-dir:<folder>, or hf-hub:<repo>."},
    )
    inputs: list[str] = field(
        default_factory=list, metadata={"help": "Image files, folders or glob patterns."}
    )
    top_k: int = field(default=3, metadata={"help": "Labels reported per image."})
    tta: Literal["none", "flip", "dihedral"] | None = field(
        default=None,
        metadata={
            "help": "Test-time augmentation: average over the image and its mirror ('flip') or its 8 "
            "flips/rotations ('dihedral'). Default: what the model was evaluated with (stored in its config.json)."
        },
    )
    temperature: float | None = field(
        default=None,
        metadata={"help": "Softmax temperature. Default: the model's calibrated one (1.0 if it has none)."},
    )
    batch_size: int = field(default=64, metadata={"help": "Images per forward pass."})
    channels_last: bool = field(
        default=True,
        metadata={
            "help": "Channels-last model and batches: the same predictions (to float rounding), faster "
            "convolutions on CPU and tensor cores (BENCHMARKS.md)."
        },
    )
    output: str | None = field(
        default=None,
        metadata={
            "help": "Write results to this .csv, .jsonl or .json file. .csv and .jsonl are written batch by "
            "batch (any number of images in constant memory; see --resume); .json at the end."
        },
    )
    resume: bool = field(
        default=False,
        metadata={
            "help": "Continue a stopped run: keep the images already in --output (.csv/.jsonl), predict the rest."
        },
    )
    num_workers: int | None = field(
        default=None,
        metadata={"help": "Decoding processes (default: the cores less one; 0 decodes in-process)."},
    )
    device: str = field(
        default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "cpu, cuda, cuda:1 ..."}
    )
    explain: bool = field(
        default=False,
        metadata={
            "help": "Write a Grad-CAM overlay PNG per image for its top-1 class (needs skinacc[explain])."
        },
    )
    explain_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the overlays (default: 'explanations' beside --output, or ./explanations)."
        },
    )
    cam_layer: str | None = field(
        default=None,
        metadata={
            "help": "Layer to explain (a model.named_modules() name). Default: the last spatial feature map."
        },
    )
    cam_method: str = field(default="gradcam", metadata={"help": f"CAM method: {', '.join(CAM_METHODS)}."})
    disable_tqdm: bool = field(
        default=False, metadata={"help": "Turn off the progress bar (as TQDM_DISABLE=1 does)."}
    )

    def validate(self) -> list[str]:
        p = []
        if not self.inputs:
            p.append("--inputs: give at least one image, folder or glob")
        if self.top_k < 1:
            p.append(f"--top_k={self.top_k}: must be >= 1")
        if self.batch_size < 1:
            p.append(f"--batch_size={self.batch_size}: must be >= 1")
        if self.temperature is not None and self.temperature <= 0:
            p.append(f"--temperature={self.temperature}: must be > 0")
        if self.output and Path(self.output).suffix.lower() not in (".csv", ".jsonl", ".json"):
            p.append(f"--output={self.output!r}: must end in .csv, .jsonl or .json")
        if self.resume and not (self.output and Path(self.output).suffix.lower() in (".csv", ".jsonl")):
            p.append(f"--resume continues a .csv or .jsonl --output (got --output={self.output!r})")
        if self.resume and self.explain:
            p.append(
                "--resume does not apply with --explain (explanations are written with the results at the end)"
            )
        if self.num_workers is not None and self.num_workers < 0:
            p.append(f"--num_workers={self.num_workers}: must be >= 0")
        if self.cam_method not in CAM_METHODS:
            p.append(f"--cam_method={self.cam_method!r}: expected one of {', '.join(CAM_METHODS)}")
        return p


def main(argv: list[str] | None = None) -> list[dict]:
    (args,) = parse_args((PredictArguments,), argv, description=__doc__)
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
    columns = [
        "path",
        *[c for i in range(args.top_k) for c in (f"label_{i + 1}", f"prob_{i + 1}")],
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
            channels_last=args.channels_last,
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
            print(f"{shown:<{width}s}  {tops}")
    print(f"predicted {len(todo) - n_err} images, {n_err} could not be decoded")
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


class ResultWriter:
    """Appends results to a .csv or .jsonl file as they come (flushed per batch)."""

    def __init__(self, out: Path, columns: list[str], top_k: int, append: bool):
        out.parent.mkdir(parents=True, exist_ok=True)
        self.jsonl = out.suffix.lower() == ".jsonl"
        self.top_k = top_k
        self.f = out.open("a" if append else "w", newline="")
        self.csv = None if self.jsonl else csv.writer(self.f)
        if self.csv is not None and not append:
            self.csv.writerow(columns)

    @staticmethod
    def row(r: dict, top_k: int, explain: bool) -> list[str]:
        tops = [c for t in r.get("top_k", []) for c in (t["label"], f"{t['prob']:.6f}")]
        return [
            r["path"],
            *tops,
            *[""] * (2 * top_k - len(tops)),
            r.get("error", ""),
            *([r.get("explanation", "")] if explain else []),
        ]

    def write(self, batch: list[dict]) -> None:
        if self.jsonl:
            self.f.write("".join(json.dumps(r) + "\n" for r in batch))
        else:
            self.csv.writerows(self.row(r, self.top_k, False) for r in batch)
        self.f.flush()

    def close(self) -> None:
        self.f.close()

    @staticmethod
    def write_all(out: Path, columns: list[str], top_k: int, results: list[dict]) -> None:
        """Write every result at once (.json, or with --explain), atomically."""
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        suffix = out.suffix.lower()
        with tmp.open("w", newline="") as f:
            if suffix == ".json":
                f.write(json.dumps(results, indent=2))
            elif suffix == ".jsonl":
                f.write("".join(json.dumps(r) + "\n" for r in results))
            else:
                w = csv.writer(f)
                w.writerow(columns)
                w.writerows(ResultWriter.row(r, top_k, "explanation" in columns) for r in results)
        os.replace(tmp, out)


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


if __name__ == "__main__":
    run(main)
