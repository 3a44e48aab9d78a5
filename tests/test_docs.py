"""The README is a short front door, and every link in it and in docs/ leads somewhere: to a file
that exists and, for a link to a heading (``page.md#heading``), to a heading that exists."""

import re
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
README = REPOSITORY / "README.md"
PAGES = [README, *sorted((REPOSITORY / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # https:, mailto: ...
MOST_README_LINES = 220


def without_code_blocks(text: str) -> str:
    """``text`` without fenced code blocks (their ``#`` lines are comments, their brackets code)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def prose(text: str) -> str:
    """``text`` without code blocks and inline code, where brackets are not links."""
    return re.sub(r"`+[^`\n]*`+", "", without_code_blocks(text))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", without_code_blocks(page.read_text()), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text())) if not EXTERNAL.match(target)]


def test_the_readme_is_a_front_door_of_at_most_220_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= MOST_README_LINES, f"README.md has {lines} lines: move details into a page under docs/"


@pytest.mark.parametrize("page", PAGES, ids=[page.relative_to(REPOSITORY).as_posix() for page in PAGES])
def test_every_relative_link_points_to_a_file_and_heading_that_exist(page):
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: the link {target!r} points to {file}, which does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: the link {target!r} names no heading of {file.name}"


def test_the_readme_links_every_page_under_docs():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in relative_links(README)}
    for page in PAGES[1:]:
        assert page.resolve() in linked, f"README.md links no {page.relative_to(REPOSITORY)}"
