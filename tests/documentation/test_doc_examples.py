"""Every code block of the tutorial and the guides runs, page by page, against a real
`aiaas dev` (`doc_examples` says how each kind of block runs), so the pages cannot drift from
the product. A page whose block fails names the page, the line and what the block printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from doc_examples import OUTPUT, RUN, DocsServer, Reader, blocks_of

pytestmark = pytest.mark.slow

DOCS = Path(__file__).parents[2] / "docs"
PAGES = [DOCS / "tutorial.md", *sorted((DOCS / "guides").glob("*.md"))]


def test_the_tutorial_and_every_guide_are_read() -> None:
    names = {page.relative_to(DOCS).as_posix() for page in PAGES}
    assert {
        "tutorial.md",
        "guides/datasets.md",
        "guides/training.md",
        "guides/deploying.md",
        "guides/access-control.md",
        "guides/operations.md",
        "guides/plugins.md",
    } <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(DOCS).as_posix())
def test_every_block_of_the_page_runs(page: Path, docs_server: DocsServer, tmp_path: Path) -> None:
    blocks = blocks_of(page)
    assert [block for block in blocks if block.language in RUN], f"{page.name} runs no code"
    reader = Reader(docs_server.base_url, docs_server.home, tmp_path)
    try:
        for block in blocks:
            reader.run(block)
    finally:
        reader.close()


def test_a_block_in_a_language_no_test_runs_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n```yaml\nkey: value\n```\n\n```text\nprinted\n```\n")
    reader = Reader("http://127.0.0.1:1", tmp_path, tmp_path)
    yaml_block, text_block = blocks_of(page)
    reader.run(text_block)  # output: nothing to run
    with pytest.raises(AssertionError, match=r"page.md:3: a ```yaml block"):
        reader.run(yaml_block)
    assert "text" in OUTPUT


def test_exported_variables_carry_to_the_next_blocks_and_a_failure_names_its_line(
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\nexport GREETING=hello\n```\n\n"
        "```python\nimport os\nseen = os.environ['GREETING']\n```\n\n"
        '```sh\ntest "$GREETING" = hello\nfalse\n```\n'
    )
    reader = Reader("http://127.0.0.1:1", tmp_path, tmp_path)
    first, second, third = blocks_of(page)
    reader.run(first)
    reader.run(second)
    assert reader.namespace["seen"] == "hello"
    with pytest.raises(AssertionError, match=r"page.md:10: exited 1"):
        reader.run(third)


def test_a_graphql_block_answered_with_a_refusal_fails(
    docs_server: DocsServer, tmp_path: Path
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\nexport AIAAS_TOKEN=$(cat ~/.local/share/aiaas/admin-token)\n```\n\n"
        '```graphql\nmutation { createProject(input: {slug: "Not A Slug", name: "x"}) '
        "{ __typename ... on Error { message } } }\n```\n"
    )
    reader = Reader(docs_server.base_url, docs_server.home, tmp_path)
    token, mutation = blocks_of(page)
    reader.run(token)
    with pytest.raises(AssertionError, match=r"page.md:5: answered \['InvalidInputError'\]"):
        reader.run(mutation)
