"""The demo's terminal output: log lines written while its progress bar runs print on lines of their own."""

from __future__ import annotations

import logging
import sys

import pytest

from ops.demo import progress_bar


def test_a_log_line_during_the_progress_bar_does_not_tear_it(capsys: pytest.CaptureFixture[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)  # what `facestream`'s logging.basicConfig installs
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with progress_bar(quiet=False) as bar:
            assert bar is not None
            bar.total = 100
            bar.update(40)
            bar.refresh()
            logging.getLogger("facestream.test").warning("a line of its own")
            bar.update(10)
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    assert "frames decoded" in err  # the bar was drawn
    line = next(raw for raw in err.split("\n") if "a line of its own" in raw)
    # whatever the terminal shows of that line is what follows its last carriage return
    assert line.rsplit("\r", 1)[-1] == "WARNING facestream.test: a line of its own", repr(line)
