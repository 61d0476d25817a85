"""Reading the README and docs/ as GitHub renders them: anchors, sections, links, quoted figures."""
from __future__ import annotations

import re
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Iterator, NamedTuple

from .processes import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
BENCHMARKS = DOCS / "BENCHMARKS.md"
DECISIONS = DOCS / "decisions.md"

_CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)
_HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$", re.M)
_HTML_ANCHOR = re.compile(r'<a id="([^"]+)"></a>')
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# A figure a benchmark or sweep produces: a ratio (2.10x, not a size such as 512x512), a time in ms,
# GFLOPs or mIoU; a range (0.92-1.02x) quotes both ends.
_FIGURE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s?[–-]\s?(\d+(?:\.\d+)?))?"
                     r"(?:×(?![\w\d])|\s?(?:ms|GFLOPs|mIoU)\b)")


def pages() -> list[Path]:
    """The README and every page of docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _without_code(text: str) -> str:
    """`text` with its fenced code blocks blanked (same length, so positions stay valid)."""
    return _CODE_BLOCK.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)


def anchors(text: str) -> dict[str, int]:
    """Every anchor of a page (headings, numbered as GitHub does for repeats, and <a id>) -> position."""
    text = _without_code(text)
    seen: Counter[str] = Counter()
    found: dict[str, int] = {}
    for m in _HEADING.finditer(text):
        base = slug(m.group(2))
        found[base if not seen[base] else f"{base}-{seen[base]}"] = m.start()
        seen[base] += 1
    for m in _HTML_ANCHOR.finditer(text):
        found[m.group(1)] = m.start()
    return found


def section(text: str, anchor: str) -> str:
    """The part of a page an anchor opens: to the next heading of the same or a higher level."""
    start = anchors(text)[anchor]
    code_free = _without_code(text)
    first = _HEADING.search(code_free, start)
    if first is None:
        return text[start:]
    level = len(first.group(1))
    for m in _HEADING.finditer(code_free, first.end()):
        if len(m.group(1)) <= level:
            return text[start:m.start()]
    return text[start:]


class Link(NamedTuple):
    page: Path
    target: Path
    anchor: str


def _links_in(page: Path, text: str) -> list[Link]:
    out = []
    for m in _LINK.finditer(text):
        url = m.group(1)
        if re.match(r"[a-z]+:", url):  # http:, https:, mailto:
            continue
        path, _, anchor = url.partition("#")
        out.append(Link(page, (page.parent / path).resolve() if path else page, anchor))
    return out


def links(page: Path) -> list[Link]:
    """The links (and images) of a page into the repository, resolved to files."""
    return _links_in(page, _without_code(page.read_text()))


class Claim(NamedTuple):
    text: str
    figures: list[str]
    links: list[Link]


def claims(page: Path) -> Iterator[Claim]:
    """Each sentence, list item or table row of a page outside code, with the benchmark figures it
    quotes and the links it makes."""
    text = re.sub(r"<!--.*?-->", "", _without_code(page.read_text()), flags=re.S)
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.splitlines() if line.strip()]
        if lines and all(line.startswith("|") for line in lines):
            units = lines
        else:
            units = []
            for item in re.split(r"\n(?=\s*(?:[-*]|\d+\.) )", block):
                joined = " ".join(line.strip() for line in item.splitlines())
                units += re.split(r"(?<=[.!?])\s+(?=[A-Z*(`\[])", joined)
        for unit in units:
            prose = re.sub(r"`[^`]*`", "", unit)  # a number in code is a value, not a claim
            figures = [n for m in _FIGURE.finditer(prose) for n in m.groups() if n]
            yield Claim(unit, figures, _links_in(page, unit))


def quotes(figure: str, text: str) -> bool:
    """Whether `text` holds a number that `figure` is a copy of, rounded half up to the digits it
    shows (44.26 is quoted as 44.3 or 44.26, not 44.2 nor 44.260)."""
    unit = Decimal(1).scaleb(-len(figure.partition(".")[2]))
    want = Decimal(figure)
    for number in re.findall(r"(?<![\d.])\d+(?:\.\d+)?", text):
        value = Decimal(number)
        if value.as_tuple().exponent <= unit.as_tuple().exponent and \
                value.quantize(unit, rounding=ROUND_HALF_UP) == want:
            return True
    return False
