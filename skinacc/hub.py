"""Publishing to the Hugging Face Hub: a run's model as a Hub folder (timm format + model card), uploaded."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from skinacc.artifact import CLASS_MAP
from skinacc.model_card import run_model_card

__all__ = ["HubError", "export_for_hub", "push_folder_to_hub"]


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
    model card.

    Args:
        run_dir: A skinacc output directory (with ``best/``, and ideally ``eval_test/`` and its run config).
        dest: Folder to write (replaced atomically).
        repo_id: Hub repository named in the card's usage snippet.
        license: The model's licence id for the card (None: ``other``, the data's terms apply).

    Returns:
        ``dest``.

    Raises:
        FileNotFoundError: The run has no exported best model.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    best = run_dir / "best"
    if not (best / "config.json").is_file() or not (best / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"--model={str(run_dir)!r}: no best/config.json and best/model.safetensors (train first)"
        )
    cfg = json.loads((best / "config.json").read_text())
    card = run_model_card(run_dir, repo_id, license)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    try:
        for name in ("config.json", "model.safetensors", CLASS_MAP):
            if (best / name).is_file():
                shutil.copy2(best / name, tmp / name)
        if not (tmp / CLASS_MAP).is_file():  # a model exported before class maps were written
            (tmp / CLASS_MAP).write_text("\n".join(cfg["label_names"]) + "\n")
        (tmp / "README.md").write_text(card)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
