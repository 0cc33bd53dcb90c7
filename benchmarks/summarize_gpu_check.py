"""Read what benchmarks/gpu_check.sh wrote and print issue #6's targets as a Markdown table.

    python benchmarks/summarize_gpu_check.py outputs/gpu_check            # prints, e.g. into summary.md

Every number comes from the result files (JSON) the steps wrote; a step that did not finish shows as
"not measured" with its exit status from steps.tsv, never as a guess.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TARGETS = {"train_e2e": 2500.0, "amp_ratio": 1.8, "infer": 10000.0, "data_wait_pct": 5.0}


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        # A throughput run stopped at its time limit leaves only the per-variant file it kept writing.
        path = path.with_name("throughput_1proc.json")
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return data["results"] if isinstance(data, dict) else data


def _steps(out: Path) -> dict[str, str]:
    f = out / "steps.tsv"
    lines = [ln.split("\t") for ln in f.read_text().splitlines() if ln.strip()] if f.is_file() else []
    return {ln[0]: ln[1] for ln in lines if len(ln) >= 2}


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "not measured"
    return f"{v:,.0f}{unit}" if abs(v) >= 100 else f"{v:.2f}{unit}"


def _met(v: float | None, target: float, higher: bool = True) -> str:
    if v is None:
        return "-"
    return "yes" if (v >= target if higher else v < target) else "**no**"


def _best(rows: list[dict], **match: Any) -> dict | None:
    """The fastest row matching every key (rows that errored, e.g. out of memory, are skipped)."""
    ok = [r for r in rows if "images_per_sec" in r and all(r.get(k) == v for k, v in match.items())]
    return max(ok, key=lambda r: r["images_per_sec"]) if ok else None


def summarize(out: Path) -> str:
    steps = _steps(out)
    env = (out / "env.txt").read_text().strip().splitlines() if (out / "env.txt").is_file() else []
    e2e = {k: _rows(out / k / "throughput.json") for k in ("e2e_bf16", "e2e_fp16", "e2e_preresized")}
    compute = _rows(out / "throughput" / "throughput.json")
    compiled = _rows(out / "throughput_compile" / "throughput.json")

    def e2e_row(step: str, mode: str) -> dict | None:
        return _best(e2e[step], mode=mode)

    def ips(r: dict | None) -> float | None:
        return None if r is None else float(r["images_per_sec"])

    tr_bf16, tr_fp16 = e2e_row("e2e_bf16", "train_e2e_jpeg"), e2e_row("e2e_fp16", "train_e2e_jpeg")
    tr_pre = e2e_row("e2e_preresized", "train_e2e_preresized")
    inf_jpeg, inf_pre = (
        e2e_row("e2e_bf16", "infer_e2e_jpeg"),
        e2e_row("e2e_preresized", "infer_e2e_preresized"),
    )
    big = max((r["batch_size"] for r in compute), default=None)
    fp32 = _best(compute, mode="train", precision="fp32", batch_size=big)
    amp = {p: _best(compute, mode="train", precision=p, batch_size=big) for p in ("bf16", "fp16")}
    ratio = {p: (ips(r) / ips(fp32)) if r and fp32 else None for p, r in amp.items()}
    inf_compute = _best(compute, mode="infer", batch_size=big)
    inf_compiled = _best(compiled, mode="infer")
    best_inf = max((v for v in (ips(inf_compute), ips(inf_compiled)) if v is not None), default=None)

    def note(step: str) -> str:
        s = steps.get(step)
        return (
            ""
            if s in (None, "0")
            else f" (step `{step}`: {'skipped, no budget left' if s == 'skipped' else 'exit ' + s})"
        )

    lines = ["## GPU check: issue #6 targets", ""]
    lines += [f"    {ln}" for ln in env] + [""]
    lines += ["| target | measured | met |", "|---|---:|:---:|"]
    lines.append(
        f"| training, end to end from the large JPEGs, bf16, >= 2,500 img/s | {_fmt(ips(tr_bf16), ' img/s')}{note('e2e_bf16')} | {_met(ips(tr_bf16), TARGETS['train_e2e'])} |"
    )
    lines.append(
        f"| training, end to end from JPEGs, fp16, >= 2,500 img/s | {_fmt(ips(tr_fp16), ' img/s')}{note('e2e_fp16')} | {_met(ips(tr_fp16), TARGETS['train_e2e'])} |"
    )
    lines.append(
        f"| training, end to end from the pre-resized cache, bf16 | {_fmt(ips(tr_pre), ' img/s')}{note('e2e_preresized')} | {_met(ips(tr_pre), TARGETS['train_e2e'])} |"
    )
    for p in ("bf16", "fp16"):
        lines.append(
            f"| AMP {p} vs FP32 training (batch {big or '-'}, best layout), >= 1.8x | {_fmt(ratio[p], 'x')}{note('compute')} | {_met(ratio[p], TARGETS['amp_ratio'])} |"
        )
    lines.append(
        f"| inference on the GPU (random tensors, best of eager/compiled), >= 10,000 img/s | {_fmt(best_inf, ' img/s')}{note('compute')} | {_met(best_inf, TARGETS['infer'])} |"
    )
    lines.append(
        f"| inference end to end from JPEGs, bf16 | {_fmt(ips(inf_jpeg), ' img/s')} | {_met(ips(inf_jpeg), TARGETS['infer'])} |"
    )
    lines.append(
        f"| inference end to end from the pre-resized cache, bf16 | {_fmt(ips(inf_pre), ' img/s')} | {_met(ips(inf_pre), TARGETS['infer'])} |"
    )
    wait = None if tr_bf16 is None else float(tr_bf16["data_wait_pct"])
    lines.append(
        f"| data wait, end-to-end bf16 training, < 5% of step time | {_fmt(wait, '%')} | {_met(wait, TARGETS['data_wait_pct'], higher=False)} |"
    )
    lines += [
        "",
        *_compute_table(compute + compiled),
        "",
        *_train_recipe(out, tr_bf16, tr_fp16),
        "",
        *_profile(out),
        "",
        *_loading(out),
    ]
    return "\n".join(lines) + "\n"


def _compute_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["Compute sweep: not measured."]
    out = [
        "Compute on random tensors (images/s, peak MB):",
        "",
        "| mode | precision | channels-last | compile | batch | images/s | vs fp32 | peak MB |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "images_per_sec" not in r:
            out.append(
                f"| {r['mode']} | {r['precision']} | {r['channels_last']} | {r['compile']} | {r['batch_size']} | {r.get('error', 'failed')[:60]} | | |"
            )
            continue
        vs = r.get("throughput_vs_fp32", float("nan"))
        vs_txt = "-" if vs != vs else f"{vs:.2f}x"  # NaN: no fp32 row to compare with (the compiled run)
        out.append(
            f"| {r['mode']} | {r['precision']} | {r['channels_last']} | {r['compile']} | {r['batch_size']} | {r['images_per_sec']:,.0f} | {vs_txt} | {r['peak_mem_mb']:,.0f} |"
        )
    return out


def _train_recipe(out: Path, *bench: dict | None) -> list[str]:
    """recipes/train.py's own per-epoch figures beside the benchmark's end-to-end ones."""
    lines = [
        "Training recipe's own figures (one short epoch) beside the end-to-end benchmark:",
        "",
        "| run | images/s | data wait | peak MB |",
        "|---|---:|---:|---:|",
    ]
    for r in bench:
        if r is not None:
            lines.append(
                f"| benchmark e2e {r['precision']} | {r['images_per_sec']:,.0f} | {r['data_wait_pct']:.1f}% | {r['peak_mem_mb']:,.0f} |"
            )
    for d in sorted(out.glob("train_*")):
        hist = d / "history.json"
        if hist.is_file():
            h = json.loads(hist.read_text())[-1]
            lines.append(
                f"| recipes/train.py {d.name.removeprefix('train_')} | {h['images_per_sec']:,.0f} | {h['data_wait_pct']:.1f}% | {h['peak_mem_mb']:,.0f} |"
            )
    return lines


def _profile(out: Path) -> list[str]:
    f = out / "profile" / "summary.json"
    if not f.is_file():
        return ["Profile: not measured."]
    s = json.loads(f.read_text())
    tr = s.get("training", {})
    total = sum(s["categories"].values()) or 1.0
    lines = [
        f"Profile ({s['device']}, {s['steps']} steps, batch {s.get('batch_size')}): {tr.get('images_per_sec', 0):,.0f} img/s, data wait {tr.get('data_wait_pct', 0):.1f}%, "
        f"{s['kernel_launches_per_step']:,.0f} kernel launches per step.",
        "",
        "| category | ms | share |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {v:,.1f} | {100 * v / total:.0f}% |" for k, v in s["categories"].items()]
    lines += ["", "| top kernels by time | launches | mean us | total ms |", "|---|---:|---:|---:|"]
    lines += [
        f"| {k['name'][:70]} | {k['launches']} | {k['mean_us']:.1f} | {k['total_ms']:.1f} |"
        for k in s["kernels"][:8]
    ]
    return lines


def _loading(out: Path) -> list[str]:
    rows = _rows(out / "loading" / "loading.json")
    if not rows:
        return ["Loading strategies: not measured."]
    lines = [
        "Loading strategies (images/s, one run each):",
        "",
        "| set | strategy | images/s | vs ImageFolder |",
        "|---|---|---:|---:|",
    ]
    for r in rows:
        v = (
            f"{r['images_per_sec']:,.0f}"
            if "images_per_sec" in r
            else r.get("skipped", r.get("error", "failed"))[:50]
        )
        lines.append(
            f"| {r['image_set']} | {r['strategy']} | {v} | {r['vs_imagefolder']:.2f}x |"
            if "vs_imagefolder" in r
            else f"| {r['image_set']} | {r['strategy']} | {v} | |"
        )
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit(f"usage: python {sys.argv[0]} OUTPUT_DIR_OF_GPU_CHECK (got {sys.argv[1:]})")
    print(summarize(Path(sys.argv[1])), end="")
