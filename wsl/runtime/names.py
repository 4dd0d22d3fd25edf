"""Plain names: what a class name, an image id or a split from data may be before it names a file.

A plain name is one path component that stays where it is put: not empty, no ``/`` or ``\\``,
not ``.`` or ``..``, only printable characters, no whitespace at either end, and at most 255
bytes in UTF-8 (a file name's limit). Spaces and letters of any script inside are fine
(``potted plant``, ``café``).
"""

from __future__ import annotations

from pathlib import Path

MAX_NAME_BYTES = 255


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain name, as a phrase ("it contains the path separator '/'"),
    or ``None`` if it is one."""
    if not isinstance(name, str):
        return f"it is of type {type(name).__name__}, not text"
    if not name.strip():
        return "it is empty or only whitespace"
    hidden = next((c for c in name if not c.isprintable()), None)
    if hidden is not None:
        return f"it has a non-printable character {hidden!r}"
    if name != name.strip():
        return "it starts or ends with whitespace"
    separator = next((c for c in name if c in "/\\"), None)
    if separator is not None:
        return f"it contains the path separator {separator!r}"
    if name in (".", ".."):
        return "it names a directory, not a file"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return f"it is {size} bytes in UTF-8, more than a file name's {MAX_NAME_BYTES}"
    return None


def contained_path(directory: str | Path, *parts: str) -> Path:
    """``directory / parts[0] / parts[1] ...``, each part checked to be a plain name, so the
    path stays inside ``directory``; raises :class:`ValueError` naming the first bad part."""
    for part in parts:
        problem = name_problem(part)
        if problem is not None:
            raise ValueError(
                f"{part!r} is not a plain name ({problem}): refusing to make a path of it "
                f"under {directory}"
            )
    return Path(directory).joinpath(*parts)
