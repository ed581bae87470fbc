"""The README and docs/ point only at what exists: every relative link's target (and its anchor,
when it has one), and every page a code span names as a `.md` file. test_docs checks the modules
and source files the pages name; a page named as `DESIGN.md` slipped past it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).parents[1]
PAGES = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").rglob("*.md"))]

FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
PAGE_NAME = re.compile(r"[\w./-]+\.md")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", flags=re.MULTILINE)


def prose(page: Path) -> str:
    """The page without its fenced code blocks, whose text is not read as markdown."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def anchor_of(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(page)):
        anchor = anchor_of(heading)
        # A repeated heading gets -1, -2, ... after the first.
        found.add(f"{anchor}-{seen[anchor]}" if anchor in seen else anchor)
        seen[anchor] = seen.get(anchor, 0) + 1
    return found


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(page))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def leads_somewhere(page: Path, link: str) -> bool:
    path, _, anchor = link.partition("#")
    target = (page.parent / path).resolve() if path else page
    if not target.exists():
        return False
    return not anchor or target.suffix != ".md" or anchor in anchors(target)


def dead_links(page: Path) -> list[str]:
    return [link for link in relative_links(page) if not leads_somewhere(page, link)]


def missing_pages(page: Path, repository: Path = REPOSITORY) -> list[str]:
    """The `.md` files the page's code spans name that exist neither beside the page nor from
    the repository's root."""
    named = [span for span in CODE_SPAN.findall(prose(page)) if PAGE_NAME.fullmatch(span)]
    return [
        name
        for name in named
        if not (page.parent / name).exists() and not (repository / name).exists()
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    assert dead_links(page) == [], f"{page.name} links to what does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_page_a_code_span_names_exists(page: Path) -> None:
    assert missing_pages(page) == [], f"{page.name} names pages that are not in the repository"


def test_the_checks_catch_a_dead_link_a_dead_anchor_and_a_missing_page(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text(
        "# Title\n\n## A `code` heading, twice\n\n## A `code` heading, twice\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#title) [ok](there.md#a-code-heading-twice-1) [ok](#local)\n"
        "[dead](gone.md) [dead](there.md#nowhere) [web](https://example.com/gone.md)\n"
        "`there.md` names a page that exists, `DESIGN.md` one that does not; "
        "`aiaas export --output gone.md` is a command.\n\n"
        "## Local\n\n```\n[in a fence](fenced.md) `fenced.md`\n```\n"
    )

    assert dead_links(page) == ["gone.md", "there.md#nowhere"]
    assert missing_pages(page, repository=tmp_path) == ["DESIGN.md"]
