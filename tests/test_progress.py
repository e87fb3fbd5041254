"""fluid.progress: the one progress mechanism (rich bars on stderr; stdout stays for results)."""

import io

import pytest
from rich.console import Console

from fluid.progress import LIGHTNING_CONSOLE, progress_bar


def _recording_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=120, force_terminal=False), buffer


def test_item_bar_counts_what_was_advanced():
    console, buffer = _recording_console()
    with progress_bar("scoring", 10, console=console) as advance:
        advance(3)
        advance(4)
    text = buffer.getvalue()
    assert "scoring" in text and "7/10" in text


def test_byte_bar_shows_sizes_from_where_it_resumed():
    console, buffer = _recording_console()
    with progress_bar("GLAMI-1M", 2_000_000, unit="bytes", completed=500_000, console=console) as advance:
        advance(500_000)
    text = buffer.getvalue()
    assert "GLAMI-1M" in text and "1.0/2.0 MB" in text


def test_a_disabled_bar_draws_nothing(capsys):
    with progress_bar("scoring", 5, enabled=False) as advance:
        advance(5)
    assert capsys.readouterr() == ("", "")


def test_bars_go_to_stderr_never_stdout(capsys):
    with progress_bar("caching features", 2) as advance:
        advance(2)
    out, err = capsys.readouterr()
    assert out == ""
    assert "caching features" in err
    assert LIGHTNING_CONSOLE == {"stderr": True}


def test_unknown_unit_is_refused():
    with pytest.raises(ValueError, match="unit must be one of"):
        with progress_bar("x", 1, unit="frames"):
            pass
