"""Reading an offline W&B run (``wandb/offline-run-*``) as Python data: config, history rows, summary,
artifacts and media, by parsing the ``.wandb`` log's blocks and ``wandb_internal_pb2.Record`` protobufs.
``wandb leet`` shows the same run in a terminal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["read_offline_run"]


def _wandb_log_records(data: bytes) -> list[bytes]:
    """Split a ``.wandb`` file into records.

    The file is a 7-byte header (``:W&B``, a 2-byte magic, a 1-byte version) followed by a
    LevelDB-style log: 32 KiB blocks of chunks, each with a 4-byte checksum, a 2-byte little-endian
    length and a 1-byte type (1 full, 2 first, 3 middle, 4 last); block tails under 7 bytes are padding.
    """
    import struct

    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log (missing :W&B header)")
    block, pos, out, parts = 32768, 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero fill up to the block end
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            parts = chunk
        elif kind == 3:
            parts += chunk
        elif kind == 4:
            out.append(parts + chunk)
            parts = b""
    return out


def read_offline_run(path: str | os.PathLike) -> dict[str, Any]:
    """What an offline W&B run recorded: name, group, tags, config, history rows, summary, artifacts, files.

    Args:
        path: A ``run-*.wandb`` file, an ``offline-run-*`` folder, or a folder holding ``wandb/``
            (the newest offline run inside is read).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    p = Path(path)
    if p.is_dir():
        found = sorted(p.rglob("run-*.wandb"), key=lambda f: f.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"no run-*.wandb file under {p}")
        p = found[-1]
    run: dict[str, Any] = {
        "file": str(p),
        "config": {},
        "history": [],
        "summary": {},
        "artifacts": [],
        "files": [],
    }

    def rows(items) -> dict[str, Any]:
        """Items to a dict; media (images, tables) arrive as nested keys and become nested dicts."""
        out: dict[str, Any] = {}
        for i in items:
            path = [i.key] if i.key else list(i.nested_key)
            d = out
            for part in path[:-1]:
                d = d.setdefault(part, {})
            d[path[-1]] = json.loads(i.value_json)
        return out

    for raw in _wandb_log_records(p.read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run |= {
                "id": r.run_id,
                "name": r.display_name,
                "group": r.run_group,
                "tags": list(r.tags),
                "project": r.project,
                "job_type": r.job_type,
            }
            run["config"].update(rows(r.config.update))
        elif kind == "config":
            run["config"].update(rows(rec.config.update))
        elif kind == "history":
            run["history"].append(rows(rec.history.item))
        elif kind == "summary":
            run["summary"].update(rows(rec.summary.update))
        elif kind == "artifact":
            a = rec.artifact
            run["artifacts"].append(
                {
                    "name": a.name,
                    "type": a.type,
                    "metadata": json.loads(a.metadata or "{}"),
                    "aliases": list(a.aliases),
                    "files": [e.path for e in a.manifest.contents],
                }
            )
        elif kind == "files":
            run["files"] += [f.path for f in rec.files.files]
    run["config"].pop("_wandb", None)
    return run
