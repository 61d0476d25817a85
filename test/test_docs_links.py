"""The README and docs/ link to each other without a dead end, and cite nothing outside the repository."""
from __future__ import annotations

import pytest

from support.markdown import DOCS, README, anchors, links, pages
from support.processes import REPO

DESIGN_NOTES = "CLUSTVIT" ".md"  # a design file that is not part of the repository
SOURCE_FOLDERS = ("clustvit_ros", "test", "benchmarks", "tools", "scripts", "launch", "config", "recipes", "docs")


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.name)
def test_every_link_reaches_a_file_and_anchor_that_exist(page):
    broken = []
    for link in links(page):
        if not link.target.exists():
            broken.append(f"{link.target.relative_to(REPO)} does not exist")
        elif link.anchor and link.target.suffix == ".md" and link.anchor not in anchors(link.target.read_text()):
            broken.append(f"{link.target.relative_to(REPO)} has no anchor #{link.anchor}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_docs_page_is_one_click_from_the_readme():
    linked = {link.target for link in links(README)}
    assert set(DOCS.glob("*.md")) - linked == set()


def test_no_file_cites_the_design_notes_outside_the_repository():
    sources = [path for folder in SOURCE_FOLDERS for path in (REPO / folder).rglob("*")
               if path.suffix in (".py", ".md", ".yaml", ".txt", ".xml", ".sh")]
    sources += [path for path in REPO.glob("*") if path.is_file()]
    citing = [str(path.relative_to(REPO)) for path in sources
              if DESIGN_NOTES in path.read_text(errors="replace")]
    assert citing == [], "cite docs/model.md instead"
