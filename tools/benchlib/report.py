"""The benchmark's results as JSON and as a Markdown table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .common import Figure


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("calls/s",):
        return f"{value:,.0f} {unit}"
    if unit == "MB":
        return f"{value:.1f} {unit}"
    return f"{value:.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def markdown(figures: list[Figure], machine: dict[str, str], command: str) -> str:
    lines = [
        f"`{command}` — python {machine['python']}, {machine['cpus']} CPUs, "
        f"containerd {machine['containerd']}, Redis {machine['redis']}, "
        f"load average at the end {machine['load_average']}",
        "",
        "| part | figure | contd_trio | reference | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        reference = _number(f.reference, f.unit)
        if f.reference_name:
            reference += f" ({f.reference_name})"
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}x"
        lines.append(
            f"| {f.part} | {f.name} | {_number(f.ours, f.unit)} | {reference} | {ratio} | {f.target} |"
        )
    notes = [f"* {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def write(
    figures: list[Figure], machine: dict[str, str], command: str, out_dir: Path, stamp: str
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stamp}.json"
    md_path = out_dir / f"{stamp}.md"
    rows = [dataclasses.asdict(f) | {"ratio": f.ratio} for f in figures]
    json_path.write_text(
        json.dumps({"command": command, "machine": machine, "figures": rows}, indent=2) + "\n"
    )
    md_path.write_text(markdown(figures, machine, command))
    return json_path, md_path
