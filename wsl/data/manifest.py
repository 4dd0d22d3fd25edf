"""A record of downloaded files (size and SHA-256), to notice a file that changed later.

For files whose checksum is not published (the authors' EdgeBoxes ``.mat`` files) the
downloader records what arrived in ``MANIFEST_NAME`` beside the files; the download
command and the proposal reader compare a file with its record before using it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from wsl.data.bad_input import DataError
from wsl.runtime.atomic import atomic_path

MANIFEST_NAME = "edgeboxes_manifest.json"


def sha256(path: Path) -> str:
    """The SHA-256 of a file, as hex."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def read_manifest(folder: Path) -> dict[str, dict]:
    """File name -> ``{"size", "sha256", "url"}`` of ``folder/MANIFEST_NAME`` (empty if none)."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(
            path, f"not a readable manifest ({error}); delete it and download again"
        ) from None
    return files


def record_file(path: Path, url: str) -> dict:
    """Add ``path``'s size and SHA-256 to its folder's manifest (written atomically)."""
    files = read_manifest(path.parent)
    files[path.name] = {"size": path.stat().st_size, "sha256": sha256(path), "url": url}
    with atomic_path(path.parent / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps({"files": files}, indent=2, sort_keys=True) + "\n")
    return files[path.name]


def check_file(path: Path) -> bool:
    """Compare ``path`` with its folder's manifest; False if the manifest does not list it.

    Raises :class:`DataError` when the size or SHA-256 differs from what was downloaded.
    """
    entry = read_manifest(path.parent).get(path.name)
    if entry is None:
        return False
    size = path.stat().st_size
    if size != entry["size"]:
        problem = f"is {size} bytes but was {entry['size']} bytes when downloaded"
    elif (digest := sha256(path)) != entry["sha256"]:
        problem = f"has SHA-256 {digest} but had {entry['sha256']} when downloaded"
    else:
        return True
    raise DataError(
        path,
        f"{problem} ({path.parent / MANIFEST_NAME}): the file changed; delete it and "
        "download it again",
    )
