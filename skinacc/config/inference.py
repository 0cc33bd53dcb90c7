"""Options of the commands that use a trained model: evaluate, predict, the web demo, ONNX export and Hub
publishing (each with ``--model``: a run folder, a timm folder, ``local-dir:`` or ``hf-hub:``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

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
    return field(
        default="outputs/demo",
        metadata={"help": "A skinacc run dir, a timm folder, local-dir:<folder>, or hf-hub:<repo>."},
    )


@dataclass
class EvalArguments:
    """What to evaluate and where the results go."""

    model: str = model_spec()
    split: Literal["train", "validation", "test", "all"] | None = field(
        default=None,
        metadata={
            "help": "Split to evaluate; 'all' takes every image. Default: 'test' of the run's own data, "
            "'all' of a source given with --data_dir/--dataset_name."
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Results folder (default: <run>/eval_<split or folder name>, or outputs/eval_...)."
        },
    )
    batch_size: int = field(default=128, metadata={"help": "Batch size per process."})
    channels_last: bool = field(
        default=True,
        metadata={
            "help": "Channels-last model and batches: the same predictions (to float rounding), faster "
            "convolutions on CPU and tensor cores (BENCHMARKS.md)."
        },
    )
    tta: Literal["none", "flip", "dihedral"] | None = field(
        default=None,
        metadata={
            "help": "Test-time augmentation (average over the mirror, or the 8 flips/rotations). "
            "Default: the model's stored setting."
        },
    )
    temperature: float | None = field(
        default=None,
        metadata={"help": "Softmax temperature. Default: the model's calibrated one (1.0 if none)."},
    )

    explain: int = field(
        default=0,
        metadata={
            "help": "Per class, Grad-CAM grids of the N most confident errors and N most confident correct "
            "cases (explain/<class>.png; W&B images when tracking). 0: off. Needs skinacc[explain]."
        },
    )
    cam_layer: str | None = field(
        default=None,
        metadata={
            "help": "Layer to explain (a model.named_modules() name). Default: the last spatial feature map."
        },
    )
    cam_method: str = field(default="gradcam", metadata={"help": f"CAM method: {', '.join(CAM_METHODS)}."})
    resume: bool = field(
        default=False,
        metadata={
            "help": "Continue an evaluation that stopped: the images already in --output_dir's "
            "predictions.partial are kept, only the others are predicted."
        },
    )
    ood_dir: str | None = field(
        default=None,
        metadata={
            "help": "A folder of images from elsewhere (no labels needed): how well the model's uncertainty "
            "(--abstain_score) separates them from the evaluated images (AUROC, FPR at 95%% TPR; clinical.json)."
        },
    )
    stress: bool = field(
        default=False,
        metadata={
            "help": "Stress report: the share of predictions that flip under flips, a quarter turn, colour, "
            "blur and scale changes (each a further pass over the images)."
        },
    )
    save_rules: bool = field(
        default=False,
        metadata={
            "help": "Store the rules --operating_point/--abstain_coverage choose on validation in the model "
            "folder's config.json (predict and the web demo apply them)."
        },
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


@dataclass
class AppArguments:
    """Which model the page serves, and where."""

    model: str = model_spec()
    examples: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Example images offered on the page: files, folders or globs (first --max_examples)."
        },
    )
    max_examples: int = field(default=8, metadata={"help": "Most examples shown."})
    top_k: int = field(default=3, metadata={"help": "Classes shown per image."})
    explain: bool = field(default=True, metadata={"help": "Show the Grad-CAM overlay (--no_explain: off)."})
    cam_layer: str | None = field(
        default=None,
        metadata={
            "help": "Layer to explain (a model.named_modules() name). Default: the last spatial feature map."
        },
    )
    cam_method: str = field(default="gradcam", metadata={"help": f"CAM method: {', '.join(CAM_METHODS)}."})
    tta: Literal["none", "flip", "dihedral"] | None = field(
        default=None, metadata={"help": "Test-time augmentation. Default: the model's stored setting."}
    )
    max_megapixels: float = field(
        default=40.0, metadata={"help": "Larger uploads are refused with a message."}
    )
    max_file_size_mb: float = field(default=30.0, metadata={"help": "Larger files are refused."})
    server_name: str | None = field(
        default=None,
        metadata={
            "help": "Address to listen on (0.0.0.0: every interface). Default: $GRADIO_SERVER_NAME, else 127.0.0.1."
        },
    )
    server_port: int | None = field(
        default=None,
        metadata={"help": "Port. Default: $GRADIO_SERVER_PORT, else 7860 (Gradio's own defaults)."},
    )
    max_queue: int | None = field(
        default=None,
        metadata={
            "help": "Most requests waiting in the queue; more are refused at once with 'queue full' instead "
            "of waiting (one request is classified at a time: about 0.3 s each with Grad-CAM on 2 CPU "
            "cores, so 50 waiting uploads wait up to ~18 s). Default: no limit."
        },
    )
    share: bool = field(default=False, metadata={"help": "Also open a public gradio.live link."})
    device: str = field(
        default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "cpu, cuda, cuda:1 ..."}
    )

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
    output: str | None = field(default=None, metadata={"help": "ONNX file (default: <run>/model.onnx)."})
    opset: int = field(default=18, metadata={"help": "ONNX opset."})
    check_batch: int = field(default=4, metadata={"help": "Batch size of the PyTorch-vs-onnxruntime check."})
    tolerance: float = field(default=1e-3, metadata={"help": "Largest acceptable max-abs logit difference."})

    def validate(self) -> list[str]:
        return [f"--check_batch={self.check_batch}: must be >= 1"] if self.check_batch < 1 else []


@dataclass
class PushArguments:
    """What to publish and where."""

    model: str = field(
        default="outputs/demo",
        metadata={
            "help": "A skinacc run directory (its best/ model is published), or an ensemble folder or a "
            "--cv_folds output folder (its ensemble/, published whole)."
        },
    )
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Hub repository, '<user-or-org>/<name>'."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where the Hub folder is written (default: <run>/hub)."}
    )
    dry_run: bool = field(default=False, metadata={"help": "Write the folder only; do not upload."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    license: str | None = field(
        default=None,
        metadata={
            "help": "Licence id for the model card, e.g. cc-by-nc-sa-4.0 (the shared ISIC set's HAM10000 terms). "
            "Default: 'other', the training data's terms apply."
        },
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

    cv_dir: str = field(
        default="",
        metadata={"help": "The --output_dir of a finished --cv_folds run (its fold_<k>/best models)."},
    )
    soup: Literal["none", "uniform", "greedy", "both"] = field(
        default="none",
        metadata={
            "help": "Also average the fold models' weights into one timm model: all of them ('uniform'), "
            "those greedy selection keeps ('greedy'), or both; written to <cv_dir>/soup_<method>."
        },
    )
    batch_size: int = field(default=128, metadata={"help": "Batch size of the greedy soup's scoring."})

    def validate(self) -> list[str]:
        p = []
        if not self.cv_dir:
            p.append("--cv_dir is required: the --output_dir of a --cv_folds run")
        elif not (Path(self.cv_dir) / "cv_report.json").is_file():
            p.append(f"--cv_dir={self.cv_dir!r}: no cv_report.json there (not a finished --cv_folds run)")
        if self.batch_size < 1:
            p.append(f"--batch_size={self.batch_size}: must be >= 1")
        return p
