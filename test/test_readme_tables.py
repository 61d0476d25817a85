"""The README's tables say what the node really declares and publishes, and every figure the README
and docs/ quote from a benchmark is in the generated table they link to."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from rclpy.node import NodeNameNonExistentError

from clustvit_ros.ros.params import PARAMETERS
from support.markdown import BENCHMARKS, DECISIONS, claims, pages, quotes, section
from support.models import make_checkpoint
from support.node_process import running_node
from support.processes import REPO

TYPE_NAMES = {bool: "bool", int: "int", float: "double", str: "string", list: "int[]"}
INFRASTRUCTURE = {"/rosout", "/parameter_events"}


def _table(marker: str) -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    start = text.index(f"<!-- {marker}")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not set(cells[0]) <= {"-"}:
            rows.append(cells)
    return rows[1:]  # without the header row


def _code(cell: str) -> str:
    return re.sub(r"^`|`$", "", cell)


def test_parameter_table_matches_the_declared_parameters():
    rows = {_code(r[0]): r for r in _table("parameters-table")}
    assert list(rows) == [spec.name for spec in PARAMETERS]
    for spec in PARAMETERS:
        _, type_name, default, when, _ = rows[spec.name]
        assert type_name == TYPE_NAMES[type(spec.default)], spec.name
        expected = str(spec.default).lower() if isinstance(spec.default, bool) else (
            f'"{spec.default}"' if isinstance(spec.default, str) else str(spec.default))
        assert _code(default) == expected, spec.name
        assert when == ("live" if spec.live else "configure" if spec.configure else "start-up"), spec.name


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    with running_node(f"checkpoint:={checkpoint}", tag="readme") as (_, h):
        ns = h.fqn.rsplit("/", 1)[0]
        def discovered():
            try:
                pubs = dict(h.node.get_publisher_names_and_types_by_node("clustvit", ns))
                subs = dict(h.node.get_subscriber_names_and_types_by_node("clustvit", ns))
            except NodeNameNonExistentError:
                return None
            return (pubs, subs) if "/diagnostics" in pubs and subs else None

        pubs, subs = h.wait_for(discovered, 20, "the node's publishers in the ROS graph")
        yield ns, pubs, subs


def _resolve(topic: str, ns: str) -> str:
    if topic.startswith("~/"):
        return f"{ns}/clustvit/{topic[2:]}"
    return topic if topic.startswith("/") else f"{ns}/{topic}"


def test_topic_table_matches_what_the_node_publishes(graph):
    ns, pubs, subs = graph
    rows = _table("topics-table")
    readme_out = {_resolve(_code(r[0]), ns): r[1] for r in rows if r[2] == "out"}
    actual_out = {name: types[0] for name, types in pubs.items() if name not in INFRASTRUCTURE}
    assert readme_out == actual_out
    readme_in = {_resolve(_code(r[0]), ns): r[1] for r in rows if r[2] == "in"}
    actual_in = {name: types[0] for name, types in subs.items() if name not in INFRASTRUCTURE}
    assert actual_in == {topic: readme_in[topic] for topic in (f"{ns}/image", f"{ns}/camera_info")}  # the defaults
    assert readme_in[f"{ns}/image/compressed"] == "sensor_msgs/msg/CompressedImage"


def figure_problems(page: Path, benchmarks: Path) -> list[str]:
    """Each benchmark figure of `page` that is not in a sentence linking its table in `benchmarks`,
    or that the linked section does not hold (to the digits quoted)."""
    problems = []
    doc = benchmarks.read_text()
    for claim in claims(page):
        if not claim.figures:
            continue
        tables = [link for link in claim.links if link.target == benchmarks.resolve()]
        if not tables:
            problems.append(f"{claim.text!r} quotes {claim.figures} without linking the table")
            continue
        scope = "".join(section(doc, link.anchor) if link.anchor else doc for link in tables)
        missing = [figure for figure in claim.figures if not quotes(figure, scope)]
        if missing:
            anchors = ", ".join(f"#{link.anchor}" for link in tables)
            problems.append(f"{claim.text!r}: {missing} not in {benchmarks.name}{anchors}")
    return problems


QUOTING_PAGES = [page for page in pages() if page not in (BENCHMARKS, DECISIONS)]


@pytest.mark.parametrize("page", QUOTING_PAGES, ids=lambda page: page.name)
def test_quoted_figures_link_the_generated_table_they_copy(page):
    assert not figure_problems(page, BENCHMARKS), "\n".join(figure_problems(page, BENCHMARKS))


def test_a_drifted_or_unlinked_figure_is_caught(tmp_path):
    bench = tmp_path / "docs" / "BENCHMARKS.md"
    bench.parent.mkdir()
    bench.write_text("# Benchmarks\n\n## Model level\n\n| model | speed-up |\n|---|---|\n| ViT-S | 1.75× |\n"
                     "\n## Node level\n\n| overhead | 2.0 ms |\n")
    page = tmp_path / "README.md"
    link = "[model level](docs/BENCHMARKS.md#model-level)"
    page.write_text(f"ViT-S runs 1.75× faster ({link}).\n\nIts overhead is 2.0 ms.\n")
    assert figure_problems(page, bench) == [
        "'Its overhead is 2.0 ms.' quotes ['2.0'] without linking the table"]
    page.write_text(f"ViT-S runs 1.8× faster ({link}).\n")
    assert figure_problems(page, bench) == []  # a copy rounded to the digits it shows
    page.write_text(f"ViT-S runs 1.79× faster ({link}).\n")
    assert len(figure_problems(page, bench)) == 1  # the table moved on, the copy did not
    page.write_text(f"ViT-S runs 1.750× faster ({link}).\n")
    assert len(figure_problems(page, bench)) == 1  # more digits than the table has
    page.write_text("The overhead is 2.0 ms ([model level](docs/BENCHMARKS.md#model-level)).\n")
    assert len(figure_problems(page, bench)) == 1  # in the file, but not in the section linked


def test_the_latency_target_parameter_names_the_controllers_bias_bound():
    from clustvit_ros.runtime.latency_target import MAX_EXTRA_BIAS

    spec = next(spec for spec in PARAMETERS if spec.name == "latency_target_ms")
    assert f"bias up to merge_bias + {MAX_EXTRA_BIAS:g})" in spec.description
    assert f"`merge_bias` + {MAX_EXTRA_BIAS:g})" in (REPO / "README.md").read_text()
