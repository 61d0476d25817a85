"""Shared by the benchmarks: machine description, p50/p95, markdown tables, doc sections.

Every benchmark prints its tables and, with ``--doc``, replaces only its own section of
docs/BENCHMARKS.md: the text between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->``.
Everything outside the markers (e.g. the training engineer's accuracy sweep) is left as it is.
"""
from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

from clustvit_ros.runtime.percentile import percentile

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "BENCHMARKS.md"
DOC_TITLE = "# Benchmarks\n"


# Statistics ------------------------------------------------------------------------------------

def p50(values: Iterable[float]) -> float:
    return percentile(values, 50)


def p95(values: Iterable[float]) -> float:
    return percentile(values, 95)


# Machine ---------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


BUSY_PATTERN = r"clustvit(_ros\.cli)? (train|sweep|eval)"


def busy_processes() -> list[str]:
    """This project's heavy jobs running alongside (`clustvit train/sweep/eval`): they distort timings."""
    try:
        out = subprocess.run(["pgrep", "-af", BUSY_PATTERN], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [line for line in out.splitlines() if "pgrep" not in line and "bash -c" not in line]


def machine(device: str = "cpu", dtype: str = "fp32") -> str:
    """One line naming the machine, torch, threads, device and dtype, and the load it ran under."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        dev = f"CUDA {torch.cuda.get_device_name(index)} (CUDA {torch.version.cuda})"
    else:
        dev = "CPU"
    load = os.getloadavg()[0]
    busy = busy_processes()
    parts = [f"{cpu_model()}, {usable_cores()} cores", f"Python {platform.python_version()}",
             f"torch {torch.__version__}", f"{torch.get_num_threads()} intra-op threads",
             f"device {dev}", f"dtype {dtype}", f"load average {load:.2f} at the start"]
    if busy:
        names = sorted({m.group(2) for line in busy if (m := re.search(BUSY_PATTERN, line))})
        parts.append(f"**{len(busy)} `clustvit {'/'.join(names)}` process(es) were running alongside**")
    return "Machine: " + ", ".join(parts) + "."


def warn_if_busy(body: str) -> str:
    """`body` with a warning under its heading when this project's heavy jobs were running at the end."""
    busy = busy_processes()
    if not busy:
        return body
    heading, _, rest = body.partition("\n")
    return (f"{heading}\n\n**Warning: {len(busy)} `clustvit train/sweep/eval` process(es) were running "
            f"when this benchmark finished; its timings are disturbed.**\n{rest}")


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z")


# Markdown --------------------------------------------------------------------------------------

def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


INTRO = """\
What the speed and accuracy claims rest on, measured on the machine named with each table. Every
comparison is a ratio measured side by side in one run (settings interleaved, so a load drift hits
all alike). p50 / p95 here, and in `clustvit eval`, `clustvit sweep`, `clustvit bag` and
`make demo`, are one definition: the percentile linearly interpolated between the two nearest ranks
(numpy's default method; `clustvit_ros/runtime/percentile.py`).

| section | script | regenerate |
|---|---|---|
| [Accuracy against cost](#camvid-the-default-model-on-real-road-scenes): the default model on CamVid, and [the synthetic model](#accuracy-against-cost-the-synthetic-model) | `clustvit sweep` | [training.md](training.md) |
| [Model level](#model-level): dense ViT vs ClustViT (ViT-T/S/B at 512, the default model) | `benchmarks/bench_model.py` | `make bench` |
| [GPU](#gpu): dense ViT vs ClustViT, fp32/fp16/bf16, eager vs CUDA graphs (a machine with CUDA, < 5 min) | `benchmarks/bench_gpu.py` | `make bench-gpu` |
| [Node level](#node-level): overhead, rate, drops, stamp age (1 and 2 processes, 640×480 and 1280×720) | `benchmarks/bench_node.py` | `make bench` |
| [Soak](#soak): 10,000 frames, memory / threads / fds / stamp age | `benchmarks/soak.py` | `make soak` |
| [Contention](#contention): inference beside busy loops, torch loops and a second node; thread policies | `benchmarks/bench_contention.py` | `make bench` |
| [Holding a latency target](#latency-target): the load stepped beside the node, `latency_target_ms` off and on | `benchmarks/bench_latency_target.py` | `make bench` |
| [What holding the target costs in accuracy](#latency-target-accuracy): mIoU at the merge levels chosen under each load | `benchmarks/accuracy_latency_target.py` | `make bench` |

Each script rewrites only the text between its own `<!-- bench:NAME:start -->` and
`<!-- bench:NAME:end -->` markers; everything outside them is kept as written. What the runs showed
and what was changed because of them is in [decisions.md](decisions.md), dated."""


def update_section(name: str, body: str, doc: Path = DOC) -> None:
    """Replace the text between `name`'s markers in `doc` (append the section when it is new).

    A document without the intro section gets it first (after its title)."""
    start, end = markers(name)
    text = doc.read_text() if doc.exists() else DOC_TITLE
    if name != "intro" and markers("intro")[0] not in text:
        i_start, i_end = markers("intro")
        block = f"{i_start}\n{INTRO}\n{i_end}\n"
        lines = text.splitlines(keepends=True)
        at = 1 if lines and lines[0].startswith("# ") else 0
        text = "".join(lines[:at]) + ("\n" if at else "") + block + "\n" + "".join(lines[at:]).lstrip("\n")
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_name(f".{doc.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, doc)


def publish(name: str, body: str, doc: Path | None) -> None:
    """Print a section and, when `doc` is given, replace that section of the document with it."""
    print(body)
    if doc:
        update_section(name, body, doc)
        print(f"updated {doc} (section '{name}')", file=sys.stderr)


def command_line() -> str:
    """How this benchmark was invoked, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    return " ".join([".venv/bin/python", str(script), *sys.argv[1:]])
