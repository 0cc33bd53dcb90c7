"""A cross-validation's fold models as one ensemble folder, and optionally weight-averaged soups.

    skinacc ensemble --cv_dir outputs/cv5                 # (re)write outputs/cv5/ensemble
    skinacc ensemble --cv_dir outputs/cv5 --soup both     # and soup_uniform/, soup_greedy/ (timm folders)
    skinacc evaluate --model outputs/cv5/soup_greedy --data_dir /data/other-clinic

Every ``--cv_folds`` run writes ``<cv_dir>/ensemble`` itself; this command rebuilds it (e.g. after
a fold was retrained) and makes the soups. The greedy soup scores candidates on the cross-validation's
own images (rebuilt from its run_config.yaml; data flags given here override), see skinacc.ensemble.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skinacc.cli.common import parse_args
from skinacc.config import DataArguments, read_run_config
from skinacc.config.inference import EnsembleArguments
from skinacc.run.cv_models import build_soups, write_cv_ensemble
from skinacc.rundir import read_cv_report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    def defaults(first: tuple) -> dict[str, Any]:
        args = first[0]
        data = dict(read_run_config(Path(args.cv_dir) / "fold_0").get("data", {})) if args.cv_dir else {}
        return {
            k: v for k, v in data.items() if k not in ("cv_fold", "cv_folds", "image_size", "resize_size")
        }

    args, data_args = parse_args(
        (EnsembleArguments, DataArguments),
        argv,
        description=__doc__,
        defaults=defaults,
        defaults_source="the cross-validation's fold_0/run_config.yaml",
    )
    report = read_cv_report(args.cv_dir)
    folder = write_cv_ensemble(Path(args.cv_dir), int(report["folds"]), report)
    print(f"wrote {folder}: {report['folds']} fold models as one ensemble")
    methods = {"none": [], "both": ["uniform", "greedy"]}.get(args.soup, [args.soup])
    soups = build_soups(args.cv_dir, methods, data_args, batch_size=args.batch_size) if methods else {}
    for method, s in soups.items():
        log = s.get("greedy_log") or []
        steps = ", ".join(
            f"fold_{e['added']} {e['score']:.4f} {'kept' if e['kept'] else 'dropped'}" for e in log
        )
        print(
            f"wrote {s['folder']}: {method} soup of {', '.join(s['ingredients'])}"
            + (f" ({steps})" if steps else "")
        )
    return {"ensemble": str(folder), "soups": soups}
