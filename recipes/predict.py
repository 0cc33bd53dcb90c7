"""Predict skin-lesion classes for images: top-k labels with probabilities.

    python recipes/predict.py --model outputs/demo --inputs photo.jpg more_photos/ "batch/*.png" --top_k 3
    python recipes/predict.py --model hf-hub:my-org/skinacc-b3 --inputs scans/ --output predictions.json
    python recipes/predict.py --model outputs/dermoscopy --inputs photo.jpg --tta dihedral
    python recipes/predict.py --model outputs/demo --inputs photos/ --output preds.csv --explain  # + Grad-CAM PNGs

Probabilities use the model's stored test-time augmentation and calibrated temperature (written by
``train.py --tta ... --calibrate``) unless --tta/--temperature say otherwise.

Inputs are files, folders (searched recursively) or glob patterns. Prints a table and writes CSV or
JSON (by the --output suffix). ``--explain`` also writes a Grad-CAM overlay per image (the view the
model classified, heat map of the top-1 class) to --explain_dir, named in the results. Not a medical
device.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from _cli import parse_args, run

from skinacc.explain import CAM_METHODS
from skinacc.hub import load_model
from skinacc.inference import collect_images, predict_images


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
    output: str | None = field(default=None, metadata={"help": "Write results to this .csv or .json file."})
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
        if self.output and Path(self.output).suffix.lower() not in (".csv", ".json"):
            p.append(f"--output={self.output!r}: must end in .csv or .json")
        if self.cam_method not in CAM_METHODS:
            p.append(f"--cam_method={self.cam_method!r}: expected one of {', '.join(CAM_METHODS)}")
        return p


def main(argv: list[str] | None = None) -> list[dict]:
    (args,) = parse_args((PredictArguments,), argv, description=__doc__)
    files = collect_images(args.inputs)
    m = load_model(args.model, args.device)
    tta = args.tta or m.tta
    temperature = args.temperature or m.temperature
    print(f"model {args.model}: {len(m.label_names)} classes, tta {tta}, temperature {temperature:.3f}")
    results = predict_images(
        m.model,
        files,
        m.label_names,
        m.data_cfg,
        args.batch_size,
        args.top_k,
        args.device,
        tta=tta,
        temperature=temperature,
    )
    if args.explain:
        default_dir = Path(args.output).parent / "explanations" if args.output else Path("explanations")
        written = explain_results(results, m, Path(args.explain_dir or default_dir), args, temperature)
        print(f"wrote {written} Grad-CAM overlays to {args.explain_dir or default_dir}")
    width = min(60, max(len(r["path"]) for r in results))
    for r in results:
        shown = r["path"] if len(r["path"]) <= width else "..." + r["path"][-width + 3 :]
        tops = r.get("error") or "  ".join(f"{t['label']} {t['prob']:.3f}" for t in r["top_k"])
        print(f"{shown:<{width}s}  {tops}")
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".json":
            out.write_text(json.dumps(results, indent=2))
        else:
            with out.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(
                    [
                        "path",
                        *[c for i in range(args.top_k) for c in (f"label_{i + 1}", f"prob_{i + 1}")],
                        "error",
                        *(["explanation"] if args.explain else []),
                    ]
                )
                for r in results:
                    tops = [c for t in r.get("top_k", []) for c in (t["label"], f"{t['prob']:.6f}")]
                    w.writerow(
                        [
                            r["path"],
                            *tops,
                            *[""] * (2 * args.top_k - len(tops)),
                            r.get("error", ""),
                            *([r.get("explanation", "")] if args.explain else []),
                        ]
                    )
        print(f"wrote {out}")
    return results


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
