"""Full ROS 2 message definitions (``ros2msg`` schema text) for MCAP bags, as rosbag2 writes them.

A bag's schema for ``sensor_msgs/msg/Image`` is the text of ``Image.msg`` followed by every message
type it uses, each after a line of 80 ``=`` and ``MSG: pkg/Type``, depth first, each once. The
``.msg`` files are looked up under ``share/<pkg>/msg/`` of every prefix in ``AMENT_PREFIX_PATH``
and this interpreter's prefix (where the ROS wheels and the venv build put them); this package's
own messages also come from the source tree's ``msg/``. Needs no rclpy.
"""
from __future__ import annotations

import os
import re
import sys
from functools import lru_cache
from pathlib import Path

__all__ = ["MessageDefinitionError", "message_definition", "find_msg_file", "type_name_of"]

SEPARATOR = "=" * 80
PRIMITIVES = frozenset({
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
    "uint32", "int64", "uint64", "string", "wstring"})
_SOURCE_MSG_DIR = Path(__file__).resolve().parents[2] / "msg"
_OWN_PACKAGE = "clustvit_ros"


class MessageDefinitionError(LookupError):
    """A message type whose .msg file (or one of its dependencies) cannot be found."""


def _split(type_name: str) -> tuple[str, str]:
    """'sensor_msgs/msg/Image' or 'sensor_msgs/Image' -> ('sensor_msgs', 'Image')."""
    parts = type_name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise MessageDefinitionError(f"not a message type name: {type_name!r} (expected pkg/msg/Type)")


def _prefixes() -> list[Path]:
    entries = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return [Path(p) for p in dict.fromkeys([*entries, sys.prefix])]


def find_msg_file(type_name: str) -> Path:
    """The .msg file of `type_name`; raises MessageDefinitionError naming where it looked."""
    package, name = _split(type_name)
    candidates = [prefix / "share" / package / "msg" / f"{name}.msg" for prefix in _prefixes()]
    if package == _OWN_PACKAGE:
        candidates.insert(0, _SOURCE_MSG_DIR / f"{name}.msg")
    for path in candidates:
        if path.is_file():
            return path
    raise MessageDefinitionError(
        f"no definition of {package}/msg/{name} found (looked in: {', '.join(map(str, candidates))}); "
        "install the message package or set AMENT_PREFIX_PATH")


def _dependencies(text: str, package: str) -> list[str]:
    """'pkg/Type' of every non-primitive field type in a .msg text, in order of appearance."""
    deps = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        field_type = line.split()[0]  # constants and defaults only exist for primitive types
        base = re.sub(r"\[.*\]$", "", field_type)          # arrays: T[], T[N], T[<=N]
        base = re.sub(r"<=\d+$", "", base)                # bounded strings: string<=N
        if base in PRIMITIVES:
            continue
        if base == "Header":
            base = "std_msgs/Header"
        deps.append(base if "/" in base else f"{package}/{base}")
    return deps


@lru_cache(maxsize=None)
def message_definition(type_name: str) -> str:
    """The concatenated definition of `type_name` and all types it depends on (rosbag2's format)."""
    package, name = _split(type_name)
    main_text = find_msg_file(type_name).read_text()
    parts = [main_text.rstrip("\n")]
    seen = {f"{package}/{name}"}
    stack = list(reversed(_dependencies(main_text, package)))
    while stack:
        dep = stack.pop()
        if dep in seen:
            continue
        seen.add(dep)
        dep_package, dep_name = _split(dep)
        text = find_msg_file(dep).read_text()
        parts.append(f"{SEPARATOR}\nMSG: {dep_package}/{dep_name}\n{text.rstrip(chr(10))}")
        stack.extend(reversed(_dependencies(text, dep_package)))
    return "\n".join(parts) + "\n"


def type_name_of(msg_class) -> str:
    """'sensor_msgs/msg/Image' for the rclpy class sensor_msgs.msg.Image."""
    module = msg_class.__module__.split(".")
    return f"{module[0]}/{module[1]}/{msg_class.__name__}"
