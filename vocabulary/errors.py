"""The exceptions paretolab raises on purpose.

Every error a user can cause is a `ParetolabError`; the CLI prints its message as one line on
stderr and exits with status 2. Anything else escaping is a bug.
"""


class ParetolabError(Exception):
    """Root of every error paretolab raises for bad input or an unusable environment."""


class SpecError(ParetolabError):
    """A sweep spec is malformed: the message names the file, the key, the value and what is allowed."""


class StoreError(ParetolabError):
    """The result store cannot be opened, locked, read or written."""


class UsageError(ParetolabError):
    """A command-line or API argument is invalid."""


class ClusterError(ParetolabError):
    """Ray could not be started or reached."""



SHOWN_CHARS = 200  # a value echoed in an error: enough to recognise it, never a screenful (a YAML
#                    bomb inside a value once made a 15.5 MB error line)


def shown(value, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)` for an error message, about `limit` characters at most.

    A longer string is cut after `limit` characters, with `...` and its full length; a container
    is walked only as far as it is shown (so a shared or self-containing structure costs no more
    than a small one), with `...` and its length where items are left out.
    """
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return _shown_items(value, limit)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * SHOWN_CHARS:
        return f"an integer of {value.bit_length():,} bits"  # repr() refuses past 4,300 digits
    limit = max(limit, 16)  # a value inside a container gets what is left, but never less than this
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value):,} characters)"
    try:
        text = repr(value)
    except Exception:  # an object of a Python spec whose __repr__ raises
        text = f"<{type(value).__name__}>"
    return clipped(text, limit)


def _shown_items(value, limit: int) -> str:
    brackets = {dict: "{}", list: "[]", tuple: "()"}.get(type(value), "{}")
    if not value:
        return f"{type(value).__name__}()" if isinstance(value, (set, frozenset)) else brackets
    if limit < 8:  # nested this deep: say there is more
        return f"{brackets[0]}...{brackets[1]}"
    parts, used = [], 2
    for i, item in enumerate(value.items() if isinstance(value, dict) else value):
        if isinstance(value, dict):
            key = shown(item[0], limit - used)
            part = f"{key}: {shown(item[1], limit - used - len(key) - 2)}"
        else:
            part = shown(item, limit - used)
        if i and used + len(part) > limit:
            parts.append(f"... ({len(value):,} items)")
            break
        parts.append(part)
        used += len(part) + 2
    single = "," if isinstance(value, tuple) and len(value) == 1 else ""
    return f"{brackets[0]}{', '.join(parts)}{single}{brackets[1]}"


def clipped(text: str, limit: int = SHOWN_CHARS) -> str:
    """Free text for an error message (such as the message of an exception a spec raised), cut
    after `limit` characters with `...` and its full length."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
