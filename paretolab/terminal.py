"""What reaches the terminal from the user (sweep names, parameter values, paths, query results) is
shown, never obeyed: control characters are written escaped and rich markup is off.

A sweep named `x[/bold]` once broke the summary of a run whose results were already written (rich
read the name as markup), and an escape sequence in a name or a path reached the terminal raw.
"""

from __future__ import annotations

import re

# C0 controls but tab, DEL, C1 controls (0x9b is a one-byte CSI), the bidirectional overrides and
# isolates that reorder what follows them, the Unicode line separators, and lone surrogates (a path
# that is not UTF-8, decoded by Python; writing one to a UTF-8 stream raises)
_CONTROL = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[\n{_CONTROL}]")
_UNSAFE_BUT_NEWLINES = re.compile(f"[{_CONTROL}]")


def printable(text: str, newlines: bool = False) -> str:
    """`text` with every control character written as its escape (`\\x1b`, `\\n`, `\\u202e`);
    newlines are kept when `newlines` (a table cell may span lines)."""
    pattern = _UNSAFE_BUT_NEWLINES if newlines else _UNSAFE
    return pattern.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


def plain(value) -> "Text":
    """`value` as a rich `Text`: what a table cell or header shows, printable, never read as markup."""
    from rich.text import Text

    return Text(printable(str(value), newlines=True))
