"""Text from the capture is hostile: make it safe for each output before it is written.

A capture is written by whoever sent its packets.  Certificate subjects and issuers, ALPN
ids, STUN realms and the capture's own file name reach the reports as the sender wrote
them (host names are validated when they are read, see :mod:`meshpcap.decode.names`, but
the renderers do not rely on that).  Each output escapes what its reader would interpret:

- terminal (the table formats): :func:`terminal_text` shows control characters (C0, DEL,
  C1), bidirectional-override and line/paragraph-separator characters, and the lone
  surrogates a non-UTF-8 file name decodes to, as visible escapes (``\\x1b``, ``\\n``,
  ``\\u202e``), so no escape sequence (ANSI CSI/SGR, OSC 8 links, OSC 0 titles) reaches the
  terminal and no name adds a line to the report;
- Markdown: :func:`markdown_text` does that, then backslash-escapes the characters that
  make markup (``\\ ` * _ [ ] < > | ~ &``), so a name cannot end a table cell, add
  emphasis, a link, an image or HTML; :func:`markdown_code` writes a code span whose
  fence no backtick in the text can close;
- CSV: :func:`csv_text` prefixes ``'`` to a text cell that starts with ``=``, ``+``,
  ``-``, ``@``, tab or carriage return (the OWASP advice against formula injection), so a
  spreadsheet shows it as text; numbers are never passed through it and stay numbers;
  :class:`CsvWriter` quotes a field that holds a carriage return without a line feed, which
  ``csv.writer(..., lineterminator="\n")`` writes unquoted (a reader then splits the row);
- JSON needs nothing: it is for programs, and the encoder escapes every control character.
"""

from __future__ import annotations

import csv
import re

# C0 and DEL and C1; the Unicode bidirectional controls (U+061C, U+200E/F, U+202A-E, U+2066-9,
# the "Trojan Source" characters); U+2028/U+2029, which some terminals and editors break lines
# at; and lone surrogates (os.fsdecode's escapes for bytes of a file name that are not UTF-8,
# which no encoder can write).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(m: re.Match) -> str:
    c = m.group()
    short = _SHORT.get(c)
    if short is not None:
        return short
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def terminal_text(text: object) -> str:
    """``text`` with every character a terminal would act on shown as a visible escape."""
    s = text if type(text) is str else str(text)
    return _UNSAFE.sub(_visible, s) if _UNSAFE.search(s) else s


_MARKUP = re.compile(r"([\\`*_\[\]<>|~&])")


def markdown_text(text: object) -> str:
    """``text`` safe inside a Markdown paragraph, list item, heading or table cell."""
    return _MARKUP.sub(r"\\\1", terminal_text(text))


def markdown_code(text: object) -> str:
    """``text`` as a Markdown code span (CommonMark 6.1): a fence longer than any run of
    backticks in it, with spaces inside when the text starts or ends with a backtick."""
    s = terminal_text(text)
    runs = re.findall(r"`+", s)
    fence = "`" * (max(map(len, runs)) + 1 if runs else 1)
    edge = s[:1] == "`" or s[-1:] == "`" or (s[:1] == " " and s[-1:] == " " and s.strip(" "))
    pad = " " if edge else ""  # CommonMark strips one space from each side of such a span
    return f"{fence}{pad}{s}{pad}{fence}"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(text: str) -> str:
    """A text cell a spreadsheet will not evaluate: ``'`` before a leading ``= + - @``, tab or CR."""
    return "'" + text if text.startswith(_FORMULA_START) else text


class _Returned:
    """A "file" whose write hands the line back (``csv.writer.writerow`` returns what write returns)."""

    __slots__ = ()

    @staticmethod
    def write(line: str) -> str:
        return line


class CsvWriter:
    """``csv.writer(stream, lineterminator="\n")`` that also quotes fields holding a lone CR.

    A row is formatted as the plain writer formats it; only when the line holds a CR is it
    formatted again with ``"\r\n"`` as the terminator, which makes the csv module quote a field
    with either character in it, and written ending in ``"\n"``.  The same text as before for
    every row without a CR, at about 0.3 us more per row.
    """

    __slots__ = ("writerow",)

    def __init__(self, stream) -> None:
        plain = csv.writer(_Returned(), lineterminator="\n").writerow
        crlf = csv.writer(_Returned(), lineterminator="\r\n").writerow
        write = stream.write

        def writerow(row) -> None:
            line = plain(row)
            if "\r" in line:
                line = crlf(row)[:-2] + "\n"
            write(line)

        self.writerow = writerow

    def writerows(self, rows) -> None:
        for row in rows:
            self.writerow(row)
