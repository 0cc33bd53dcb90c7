"""Publishing to the Hugging Face Hub: a run's model as a Hub folder (timm format + model card), or a
cross-validation's ensemble as its folder (members in timm format, ``ensemble.json``, card), uploaded."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from skinacc.artifact import CLASS_MAP
from skinacc.ensemble import ENSEMBLE_DIR, ENSEMBLE_FILE, is_ensemble
from skinacc.model_card import run_model_card
from skinacc.rundir import atomic_folder

__all__ = ["HubError", "export_ensemble_for_hub", "export_for_hub", "push_folder_to_hub"]


#: What a model folder publishes (a run's ``best/``, an ensemble member): timm's files and the class map.
MODEL_FILES = ("config.json", "model.safetensors", CLASS_MAP)


class HubError(RuntimeError):
    """The Hugging Face Hub could not be reached or refused the request."""


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    commit_message: str = "Upload skinacc model",
    repo_type: str = "model",
    flag: str = "--hub_model_id",
) -> str:
    """Create (if needed) and upload a model (or, with ``repo_type="dataset"``, a dataset) folder to the
    Hugging Face Hub. ``flag`` names the option that gave ``repo_id`` in errors.

    Returns:
        The URL of the commit.

    Raises:
        HubError: The Hub cannot be reached or refuses the upload (network, token, permissions).
    """
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, commit_message=commit_message
        )
    except Exception as e:
        raise HubError(
            f"{flag}={repo_id!r}: upload of {folder} failed ({type(e).__name__}: {str(e)[:300]})"
        ) from e
    return str(getattr(info, "commit_url", info))


def export_for_hub(
    run_dir: str | os.PathLike,
    dest: str | os.PathLike,
    repo_id: str | None = None,
    license: str | None = None,
) -> Path:
    """Build the Hub folder of a training run: its best model (timm format), ``class_map.txt`` and a
    model card; or, for an ensemble folder or a cross-validation folder (its ``ensemble/``), the ensemble
    (:func:`export_ensemble_for_hub`).

    Args:
        run_dir: A skinacc output directory (with ``best/``, and ideally ``eval_test/`` and its run config),
            an ensemble folder or a cross-validation folder.
        dest: Folder to write (replaced atomically).
        repo_id: Hub repository named in the card's usage snippet.
        license: The model's licence id for the card (None: ``other``, the data's terms apply).

    Returns:
        ``dest``.

    Raises:
        FileNotFoundError: The run has no exported best model.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    if not (run_dir / "best").is_dir():
        for folder in (run_dir, run_dir / ENSEMBLE_DIR):
            if is_ensemble(folder):
                return export_ensemble_for_hub(folder, dest, repo_id, license)
    best = run_dir / "best"
    if not (best / "config.json").is_file() or not (best / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"--model={str(run_dir)!r}: no best/config.json and best/model.safetensors (train first), and "
            f"no {ENSEMBLE_FILE} in it or in {ENSEMBLE_DIR}/"
        )
    cfg = json.loads((best / "config.json").read_text())
    card = run_model_card(run_dir, repo_id, license)
    with atomic_folder(dest) as tmp:
        for name in MODEL_FILES:
            if (best / name).is_file():
                shutil.copy2(best / name, tmp / name)
        if not (tmp / CLASS_MAP).is_file():  # a model exported before class maps were written
            (tmp / CLASS_MAP).write_text("\n".join(cfg["label_names"]) + "\n")
        (tmp / "README.md").write_text(card)
    return dest


def export_ensemble_for_hub(
    folder: str | os.PathLike,
    dest: str | os.PathLike,
    repo_id: str | None = None,
    license: str | None = None,
) -> Path:
    """The Hub folder of an ensemble (:mod:`skinacc.ensemble`): each member's timm files, ``ensemble.json``
    and the ensemble's model card with the Hub's usage and licence added. Left out: the members' local
    source paths and the cross-validation's ``run_config.yaml`` (local data paths; a Hub user passes
    ``--data_dir``). ``skinacc.load_model("hf-hub:<repo>")`` loads it back as the same ensemble.

    Args:
        folder: The ensemble folder.
        dest: Folder to write (replaced atomically).
        repo_id: Hub repository named in the card's usage line.
        license: The model's licence id for the card's metadata (None: ``other``).

    Returns:
        ``dest``.
    """
    folder, dest = Path(folder), Path(dest)
    spec = json.loads((folder / ENSEMBLE_FILE).read_text())
    with atomic_folder(dest) as tmp:
        for entry in spec["members"]:
            entry.pop("source", None)
            (tmp / entry["path"]).mkdir(parents=True)
            for name in MODEL_FILES:
                if (folder / entry["path"] / name).is_file():
                    shutil.copy2(folder / entry["path"] / name, tmp / entry["path"] / name)
        (tmp / ENSEMBLE_FILE).write_text(json.dumps(spec, indent=2))
        card = (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""
        (tmp / "README.md").write_text(_hub_ensemble_card(card, repo_id, license))
    return dest


def _hub_ensemble_card(card: str, repo_id: str | None, license: str | None) -> str:
    """The ensemble's card with the licence in its Hub metadata and a line on loading it from the Hub."""
    head, _, body = (
        card.partition("---\n")[2].partition("---\n") if card.startswith("---\n") else ("", "", card)
    )
    meta = f"license: {license or 'other'}\n" + "".join(
        line + "\n" for line in head.splitlines() if not line.startswith("license:")
    )
    repo = repo_id or "<repo>"
    usage = (
        f"\n**From the Hub.** `skinacc predict --model hf-hub:{repo} --inputs lesion.jpg` (also evaluate and "
        f'app), or in Python `skinacc.load_model("hf-hub:{repo}")`: the whole folder is downloaded and '
        "loaded as one model. Each member alone loads in timm: "
        f'`timm.create_model("local-dir:<snapshot>/members/<member>", pretrained=True)`.\n'
    )
    return f"---\n{meta}---\n{body.rstrip()}\n{usage}"
