"""Options of the commands that use a trained model: evaluate, predict, the web demo, ONNX export and Hub
publishing (each with ``--model``: a run folder, a timm folder, ``local-dir:`` or ``hf-hub:``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from skinacc.config.fields import option

__all__ = [
    "CAM_METHODS",
    "AppArguments",
    "EnsembleArguments",
    "EvalArguments",
    "OnnxArguments",
    "PredictArguments",
    "PushArguments",
]

#: --cam_method value -> pytorch_grad_cam class name (skinacc.explain).
CAM_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
}


def model_spec() -> Any:
    """The ``--model`` option of every command that loads a trained model (one text, one default)."""
    return option(
        "A skinacc run dir, a timm folder, local-dir:<folder>, or hf-hub:<repo>.", default="outputs/demo"
    )


def channels_last_spec() -> Any:
    """The ``--channels_last`` option of the commands that run a trained model (evaluate, predict)."""
    return option(
        "Channels-last model and batches: the same predictions (to float rounding), faster "
        "convolutions on CPU and tensor cores (BENCHMARKS.md).",
        default=True,
    )


@dataclass
class EvalArguments:
    """What to evaluate and where the results go."""

    model: str = model_spec()
    split: Literal["train", "validation", "test", "all"] | None = option(
        "Split to evaluate; 'all' takes every image. Default: 'test' of the run's own data, "
        "'all' of a source given with --data_dir/--dataset_name.",
        default=None,
    )
    output_dir: str | None = option(
        "Results folder (default: <run>/eval_<split or folder name>, or outputs/eval_...).", default=None
    )
    batch_size: int = option("Batch size per process.", default=128)
    channels_last: bool = channels_last_spec()
    tta: Literal["none", "flip", "dihedral"] | None = option(
        "Test-time augmentation (average over the mirror, or the 8 flips/rotations). "
        "Default: the model's stored setting.",
        default=None,
    )
    temperature: float | None = option(
        "Softmax temperature. Default: the model's calibrated one (1.0 if none).", default=None
    )

    explain: int = option(
        "Per class, Grad-CAM grids of the N most confident errors and N most confident correct "
        "cases (explain/<class>.png; W&B images when tracking). 0: off. Needs skinacc[explain].",
        default=0,
    )
    cam_layer: str | None = option(
        "Layer to explain (a model.named_modules() name). Default: the last spatial feature map.",
        default=None,
    )
    cam_method: str = option(f"CAM method: {', '.join(CAM_METHODS)}.", default="gradcam")
    resume: bool = option(
        "Continue an evaluation that stopped: the images already in --output_dir's "
        "predictions.partial are kept, only the others are predicted.",
        default=False,
    )
    ood_dir: str | None = option(
        "A folder of images from elsewhere (no labels needed): how well the model's uncertainty "
        "(--abstain_score) separates them from the evaluated images (AUROC, FPR at 95%% TPR; clinical.json).",
        default=None,
    )
    stress: bool = option(
        "Stress report: the share of predictions that flip under flips, a quarter turn, colour, "
        "blur and scale changes (each a further pass over the images).",
        default=False,
    )
    save_rules: bool = option(
        "Store the rules --operating_point/--abstain_coverage choose on validation in the model "
        "folder's config.json (predict and the web demo apply them).",
        default=False,
    )

    def validate(self) -> list[str]:
        p = [f"--batch_size={self.batch_size}: must be >= 1"] if self.batch_size < 1 else []
        if self.explain < 0:
            p.append(f"--explain={self.explain}: must be >= 0 (cases per class; 0 turns it off)")
        if self.cam_method not in CAM_METHODS:
            p.append(f"--cam_method={self.cam_method!r}: expected one of {', '.join(CAM_METHODS)}")
        if self.temperature is not None and self.temperature <= 0:
            p.append(f"--temperature={self.temperature}: must be > 0")
        return p


@dataclass
class PredictArguments:
    """What to predict and where the results go."""

    model: str = model_spec()
    inputs: list[str] = option("Image files, folders or glob patterns.", default_factory=list)
    top_k: int = option("Labels reported per image.", default=3)
    tta: Literal["none", "flip", "dihedral"] | None = option(
        "Test-time augmentation: average over the image and its mirror ('flip') or its 8 "
        "flips/rotations ('dihedral'). Default: what the model was evaluated with (stored in its config.json).",
        default=None,
    )
    temperature: float | None = option(
        "Softmax temperature. Default: the model's calibrated one (1.0 if it has none).", default=None
    )
    batch_size: int = option("Images per forward pass.", default=64)
    channels_last: bool = channels_last_spec()
    output: str | None = option(
        "Write results to this .csv, .jsonl or .json file. .csv and .jsonl are written batch by "
        "batch (any number of images in constant memory; see --resume); .json at the end.",
        default=None,
    )
    resume: bool = option(
        "Continue a stopped run: keep the images already in --output (.csv/.jsonl), predict the rest.",
        default=False,
    )
    num_workers: int | None = option(
        "Decoding processes (default: the cores less one; 0 decodes in-process).", default=None
    )
    device: str = option("cpu, cuda, cuda:1 ...", default="cuda" if torch.cuda.is_available() else "cpu")
    explain: bool = option(
        "Write a Grad-CAM overlay PNG per image for its top-1 class (needs skinacc[explain]).", default=False
    )
    explain_dir: str | None = option(
        "Folder of the overlays (default: 'explanations' beside --output, or ./explanations).", default=None
    )
    cam_layer: str | None = option(
        "Layer to explain (a model.named_modules() name). Default: the last spatial feature map.",
        default=None,
    )
    cam_method: str = option(f"CAM method: {', '.join(CAM_METHODS)}.", default="gradcam")
    disable_tqdm: bool = option("Turn off the progress bar (as TQDM_DISABLE=1 does).", default=False)

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


@dataclass
class AppArguments:
    """Which model the page serves, and where."""

    model: str = model_spec()
    examples: list[str] = option(
        "Example images offered on the page: files, folders or globs (first --max_examples).",
        default_factory=list,
    )
    max_examples: int = option("Most examples shown.", default=8)
    top_k: int = option("Classes shown per image.", default=3)
    explain: bool = option("Show the Grad-CAM overlay (--no_explain: off).", default=True)
    cam_layer: str | None = option(
        "Layer to explain (a model.named_modules() name). Default: the last spatial feature map.",
        default=None,
    )
    cam_method: str = option(f"CAM method: {', '.join(CAM_METHODS)}.", default="gradcam")
    tta: Literal["none", "flip", "dihedral"] | None = option(
        "Test-time augmentation. Default: the model's stored setting.", default=None
    )
    max_megapixels: float = option("Larger uploads are refused with a message.", default=40.0)
    max_file_size_mb: float = option("Larger files are refused.", default=30.0)
    server_name: str | None = option(
        "Address to listen on (0.0.0.0: every interface). Default: $GRADIO_SERVER_NAME, else 127.0.0.1.",
        default=None,
    )
    server_port: int | None = option(
        "Port. Default: $GRADIO_SERVER_PORT, else 7860 (Gradio's own defaults).", default=None
    )
    max_queue: int | None = option(
        "Most requests waiting in the queue; more are refused at once with 'queue full' instead "
        "of waiting (one request is classified at a time: about 0.3 s each with Grad-CAM on 2 CPU "
        "cores, so 50 waiting uploads wait up to ~18 s). Default: no limit.",
        default=None,
    )
    share: bool = option("Also open a public gradio.live link.", default=False)
    device: str = option("cpu, cuda, cuda:1 ...", default="cuda" if torch.cuda.is_available() else "cpu")

    def validate(self) -> list[str]:
        p = []
        if self.top_k < 1:
            p.append(f"--top_k={self.top_k}: must be >= 1")
        if self.max_queue is not None and self.max_queue < 1:
            p.append(f"--max_queue={self.max_queue}: must be >= 1 (or unset: no limit)")
        if self.server_port is not None and not 1 <= self.server_port <= 65535:
            p.append(f"--server_port={self.server_port}: must be a port number, 1-65535")
        if self.cam_method not in CAM_METHODS:
            p.append(f"--cam_method={self.cam_method!r}: expected one of {', '.join(CAM_METHODS)}")
        if self.max_megapixels <= 0 or self.max_file_size_mb <= 0:
            p.append("--max_megapixels and --max_file_size_mb must be > 0")
        if self.max_examples < 0:
            p.append(f"--max_examples={self.max_examples}: must be >= 0")
        return p


@dataclass
class OnnxArguments:
    """What to export."""

    model: str = model_spec()
    output: str | None = option("ONNX file (default: <run>/model.onnx).", default=None)
    opset: int = option("ONNX opset.", default=18)
    check_batch: int = option("Batch size of the PyTorch-vs-onnxruntime check.", default=4)
    tolerance: float = option("Largest acceptable max-abs logit difference.", default=1e-3)

    def validate(self) -> list[str]:
        return [f"--check_batch={self.check_batch}: must be >= 1"] if self.check_batch < 1 else []


@dataclass
class PushArguments:
    """What to publish and where."""

    model: str = option(
        "A skinacc run directory (its best/ model is published), or an ensemble folder or a "
        "--cv_folds output folder (its ensemble/, published whole).",
        default="outputs/demo",
    )
    hub_model_id: str | None = option("Hub repository, '<user-or-org>/<name>'.", default=None)
    output_dir: str | None = option("Where the Hub folder is written (default: <run>/hub).", default=None)
    dry_run: bool = option("Write the folder only; do not upload.", default=False)
    private: bool = option("Create the repository as private.", default=False)
    license: str | None = option(
        "Licence id for the model card, e.g. cc-by-nc-sa-4.0 (the shared ISIC set's HAM10000 terms). "
        "Default: 'other', the training data's terms apply.",
        default=None,
    )

    def validate(self) -> list[str]:
        p = []
        if not self.dry_run and not self.hub_model_id:
            p.append("--hub_model_id is required unless --dry_run")
        if self.hub_model_id and self.hub_model_id.count("/") != 1:
            p.append(f"--hub_model_id={self.hub_model_id!r}: must look like '<user-or-org>/<name>'")
        return p


@dataclass
class EnsembleArguments:
    """Which cross-validation's fold models to combine, and how."""

    cv_dir: str = option(
        "The --output_dir of a finished --cv_folds run (its fold_<k>/best models).", default=""
    )
    soup: Literal["none", "uniform", "greedy", "both"] = option(
        "Also average the fold models' weights into one timm model: all of them ('uniform'), "
        "those greedy selection keeps ('greedy'), or both; written to <cv_dir>/soup_<method>.",
        default="none",
    )
    batch_size: int = option("Batch size of the greedy soup's scoring.", default=128)

    def validate(self) -> list[str]:
        p = []
        if not self.cv_dir:
            p.append("--cv_dir is required: the --output_dir of a --cv_folds run")
        elif not (Path(self.cv_dir) / "cv_report.json").is_file():
            p.append(f"--cv_dir={self.cv_dir!r}: no cv_report.json there (not a finished --cv_folds run)")
        if self.batch_size < 1:
            p.append(f"--batch_size={self.batch_size}: must be >= 1")
        return p
