"""The README's sample of what `aiaas dev` prints is what it prints, up to what varies between
runs: the port, the token and the home directory."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_support import READY, DevProcess, dev_processes_cleaned_up, start

pytestmark = pytest.mark.slow

README = Path(__file__).parents[2] / "README.md"
SAMPLE = re.compile(r"^```text\n\$ aiaas dev\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)
SAMPLE_HOME = "/home/you"
SAMPLE_PORT = ":8000/"
LAST_SAMPLE_LINE = re.compile(r"Press Ctrl-C to stop\.")


@pytest.fixture
def dev_processes() -> Iterator[list[DevProcess]]:
    yield from dev_processes_cleaned_up()


def readme_sample() -> list[str]:
    found = SAMPLE.search(README.read_text(encoding="utf-8"))
    assert found, "the README has no ```text block starting with `$ aiaas dev`"
    return found.group(1).splitlines()


def sample_pattern(sample: list[str], home: Path) -> re.Pattern[str]:
    """The sample as a pattern for the whole output. A line that starts with "…" stands for any
    number of lines (the processes' log); "…" within a line for the rest of a word (the
    token); the sample's port for any port, and its home directory for `home`."""
    parts = []
    for line in sample:
        if line.startswith("…"):
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pattern = re.escape(line)
        pattern = pattern.replace(re.escape(SAMPLE_PORT), r":\d+/")
        pattern = pattern.replace(re.escape(SAMPLE_HOME), re.escape(str(home)))
        pattern = pattern.replace(re.escape("…"), r"\S+")
        parts.append(pattern + r"\n")
    return re.compile("".join(parts))


def test_the_sample_pattern_reads_the_placeholders(tmp_path: Path) -> None:
    # What the README test relies on, shown on a sample that cannot drift.
    pattern = sample_pattern(
        [
            "… (log)",
            "ready: http://127.0.0.1:8000/graphql",
            "token: aiaas_…",
            "  (saved to /home/you/data)",
        ],
        tmp_path,
    )

    assert pattern.fullmatch(
        "a log line\nanother\n"
        f"ready: http://127.0.0.1:41234/graphql\ntoken: aiaas_x1\n  (saved to {tmp_path}/data)\n"
    )
    assert not pattern.fullmatch(
        f"ready: http://127.0.0.1:41234/graphql\ntoken: aiaas_x1  (saved to {tmp_path}/data)\n"
    )
    assert not pattern.fullmatch(
        "ready: http://127.0.0.1:41234/graphql\ntoken: aiaas_x1\n  (saved to /home/you/data)\n"
    )


def test_a_first_run_prints_the_readme_sample(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    home = tmp_path / "home"
    # The data dir a user gets by default, under a home of the test's own.
    dev = start(dev_processes, home / ".local" / "share" / "aiaas")
    dev.wait_for(READY)
    dev.wait_for(LAST_SAMPLE_LINE)
    status, _ = dev.stop(signal.SIGINT)
    output = dev.finish()

    assert status == 0
    assert sample_pattern(readme_sample(), home).fullmatch(output), (
        f"the README's sample of `aiaas dev` differs from what it prints:\n{output}"
    )
