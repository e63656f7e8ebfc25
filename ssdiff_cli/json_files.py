"""Small JSON documents read without trusting them (model cards, adapter descriptions, the JSON
of a training state): only a regular file is opened, at most a byte cap of it is read, and the
document may nest only so deep, so a FIFO, a link to ``/dev/zero`` or ``[[[[...`` cannot hang,
exhaust memory or overflow the stack. No project imports: the caller passes the error class its
exit code needs.
"""

from __future__ import annotations

import json
import os
import stat

#: Largest JSON file read (the shipped model cards are under 25 kB) and the deepest nesting
#: accepted (they nest 7 levels).
MAX_JSON_BYTES = 2**20
MAX_JSON_DEPTH = 32


def json_depth(value, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply lists and objects nest in ``value``, counted up to just past ``limit``
    (iteratively: no recursion to exhaust)."""
    deepest, todo = 0, [(value, 1)]
    while todo and deepest <= limit:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json_object(raw: bytes | str, source: str, what: str, error: type = ValueError) -> dict:
    """The JSON object in ``raw``, or ``error(message)`` naming ``source``: malformed, nested
    more than :data:`MAX_JSON_DEPTH` levels, or not an object (a list, a number)."""
    try:
        data = json.loads(raw)
    except RecursionError:
        data = None
    except ValueError as exc:  # JSON and UTF-8 errors
        raise error(f"{source}: unreadable {what} ({exc})") from None
    if data is None or json_depth(data) > MAX_JSON_DEPTH:
        raise error(f"{source}: the {what} nests more than {MAX_JSON_DEPTH} levels deep")
    if not isinstance(data, dict):
        raise error(f"{source}: the {what} is a JSON {type(data).__name__}, not an object")
    return data


def read_json_object(path: str | os.PathLike, what: str, error: type = ValueError,
                     max_bytes: int = MAX_JSON_BYTES) -> dict:
    """The JSON object in the file ``path`` (:func:`parse_json_object`), read only when it is a
    regular file and at most ``max_bytes`` long; ``error(message)`` naming it otherwise."""
    not_regular = f"{path}: the {what} is not a regular file (a FIFO or a device?)"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise error(not_regular)
        # non-blocking: a FIFO swapped in after the check must not hang the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise error(not_regular)
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        if isinstance(exc, error):
            raise
        raise error(f"{path}: unreadable {what} ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise error(f"{path}: the {what} is over {max_bytes / 2**20:g} MiB; not one this tool "
                    "wrote")
    return parse_json_object(raw, str(path), what, error)
