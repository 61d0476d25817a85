"""The README's topic and parameter tables say what the node really declares and publishes."""
from __future__ import annotations

import re

import pytest
from rclpy.node import NodeNameNonExistentError

from clustvit_ros.ros.params import PARAMETERS
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


def test_the_latency_target_parameter_names_the_controllers_bias_bound():
    from clustvit_ros.runtime.latency_target import MAX_EXTRA_BIAS

    spec = next(spec for spec in PARAMETERS if spec.name == "latency_target_ms")
    assert f"bias up to merge_bias + {MAX_EXTRA_BIAS:g})" in spec.description
    assert f"`merge_bias` + {MAX_EXTRA_BIAS:g})" in (REPO / "README.md").read_text()
