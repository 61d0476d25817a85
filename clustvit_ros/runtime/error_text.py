"""The one truncation of every error text that is kept or shown: /diagnostics' last_error, the node's
log (and /rosout), `clustvit bag`'s summary and a command's one-line error.

An error may quote what it refuses (an encoding string, a line of a file), and that can be megabytes:
kept whole, it would ride along in every later /diagnostics message and fill the logs.
"""
from __future__ import annotations

import re

MAX_ERROR_CHARS = 1000
"""Longest error text kept or shown. A longer one keeps its start and its end (where the reason
often follows what was quoted), with a note of how much was cut between them."""

_LINE_BREAKS = re.compile(r"\s*\n\s*")


def error_text(text: object, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` on one line and at most `limit` characters plus the note of what was cut."""
    text = str(text)
    if len(text) > limit:
        head, tail = limit * 2 // 3, limit - limit * 2 // 3
        text = f"{text[:head]} [... {len(text) - limit} characters cut ...] {text[-tail:]}"
    return _LINE_BREAKS.sub(" ", text)
