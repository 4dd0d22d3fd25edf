"""Install visdom's web-UI files (JS, CSS, fonts) from the npm registry, for offline machines.

``python -m tools.visdom_assets [--static-dir DIR]`` (``make visdom`` runs it first)

visdom's ``visdom.server.build.download_scripts`` fetches these files from unpkg.com,
cdn.plot.ly, d3js.org and cdnjs at first start; without them the server's data API works but
the browser page stays blank. Every one of those files is published in an npm package, so this
tool fetches the packages with ``npm pack`` (which checks the registry's integrity hash) and
copies the needed files out of the tarballs into visdom's ``static`` folder, under the names
visdom 0.2.4's ``download_scripts`` uses.

- Idempotent: files already present (non-empty) are kept; with nothing missing, npm is not run.
- All or nothing: every needed tarball is fetched and every file read into memory before the
  first file is written, and each file is written atomically, so a failure (no ``npm``, registry
  unreachable, file missing from a package) leaves no new or partial file.
- Last, ``static/version.built`` gets visdom's version, as ``download_scripts`` writes it: with
  that marker and every file present, ``download_scripts`` has nothing to fetch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from wsl.runtime.atomic import atomic_path

#: The visdom version whose ``download_scripts`` list :data:`ASSETS` reproduces.
VISDOM_VERSION = "0.2.4"
#: Marker file (relative to the static folder) that ``download_scripts`` reads.
VERSION_MARKER = "version.built"
NPM_TIMEOUT_S = 900
#: Fail within seconds, not minutes, when the registry cannot be reached.
NPM_FETCH_OPTS = (
    "--fetch-retries=1",
    "--fetch-retry-mintimeout=2000",
    "--fetch-retry-maxtimeout=10000",
)


@dataclass(frozen=True)
class Asset:
    """One file of visdom's UI: ``member`` of npm package ``spec`` saved as ``target``.

    ``member`` is the path inside the package (without the tarball's top folder, normally
    ``package/``); ``target`` is relative to visdom's ``static`` folder.
    """

    spec: str
    member: str
    target: str


_BS = "bootstrap@3.3.7"
_MJ = "mathjax@2.7.5"
_LBP = "layout-bin-packer@1.4.0"
_GLYPHS = "glyphicons-halflings-regular"

ASSETS: tuple[Asset, ...] = (
    Asset("jquery@3.1.1", "dist/jquery.min.js", "js/jquery.min.js"),
    Asset(_BS, "dist/js/bootstrap.min.js", "js/bootstrap.min.js"),
    Asset("react@16.2.0", "umd/react.production.min.js", "js/react-react.min.js"),
    Asset("react-dom@16.2.0", "umd/react-dom.production.min.js", "js/react-dom.min.js"),
    Asset("react-modal@3.1.10", "dist/react-modal.min.js", "js/react-modal.min.js"),
    # cdn.plot.ly/plotly-2.11.1.min.js
    Asset("plotly.js-dist-min@2.11.1", "plotly.min.js", "js/plotly-plotly.min.js"),
    Asset("sjcl@1.0.7", "sjcl.js", "js/sjcl.js"),
    Asset(_LBP, "dist/layout-bin-packer.js.map", "js/layout-bin-packer.js.map"),
    Asset(_LBP, "dist/layout-bin-packer.js", "js/layout_bin_packer.js"),
    # d3js.org/d3.v3.min.js and d3js.org/d3-selection-multi.v1.js (the unminified v1 build)
    Asset("d3@3.5.17", "d3.min.js", "js/d3.v3.min.js"),
    Asset("d3-selection-multi@1.0.1", "build/d3-selection-multi.js", "js/d3-selection-multi.v1.js"),
    Asset("save-svg-as-png@1.4.17", "lib/saveSvgAsPng.js", "js/saveSvgAsPng.js"),
    Asset("react-resizable@1.4.6", "css/styles.css", "css/react-resizable-styles.css"),
    Asset("react-grid-layout@0.16.3", "css/styles.css", "css/react-grid-layout-styles.css"),
    Asset(_BS, "dist/css/bootstrap.min.css", "css/bootstrap.min.css"),
    # unpkg.com/classnames@2.2.5 serves the package's main file; visdom files it under fonts/.
    Asset("classnames@2.2.5", "index.js", "fonts/classnames"),
    Asset(_BS, f"dist/fonts/{_GLYPHS}.eot", f"fonts/{_GLYPHS}.eot"),
    Asset(_BS, f"dist/fonts/{_GLYPHS}.woff2", f"fonts/{_GLYPHS}.woff2"),
    Asset(_BS, f"dist/fonts/{_GLYPHS}.woff", f"fonts/{_GLYPHS}.woff"),
    Asset(_BS, f"dist/fonts/{_GLYPHS}.ttf", f"fonts/{_GLYPHS}.ttf"),
    # visdom saves the SVG font under a name with the URL fragment (its existence check looks
    # for that name); the browser asks for the plain name, so both are written.
    Asset(_BS, f"dist/fonts/{_GLYPHS}.svg", f"fonts/{_GLYPHS}.svg#glyphicons_halflingsregular"),
    Asset(_BS, f"dist/fonts/{_GLYPHS}.svg", f"fonts/{_GLYPHS}.svg"),
    # cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.5/... (the same files as npm's mathjax@2.7.5)
    *(
        Asset(_MJ, path, f"js/mathjax/2.7.5/{path}")
        for path in (
            "config/Safe.js",
            "config/TeX-AMS-MML_HTMLorMML.js",
            "extensions/Safe.js",
            "jax/output/SVG/fonts/TeX/fontdata.js",
            "jax/output/SVG/jax.js",
            "jax/output/SVG/fonts/TeX/Size1/Regular/Main.js",
            "jax/output/SVG/config.js",
            "MathJax.js",
        )
    ),
)


class AssetError(RuntimeError):
    """The assets could not be fetched or read (npm missing, registry refused, bad tarball)."""


def default_static_dir() -> Path:
    """The ``static`` folder of the installed visdom package."""
    from visdom.utils.shared_utils import get_visdom_path

    return Path(get_visdom_path("static"))


def visdom_version() -> str:
    """The installed visdom's ``__version__`` (what ``download_scripts`` compares the marker to)."""
    import visdom

    return str(visdom.__version__)


def _target_path(static_dir: Path, target: str) -> Path:
    """``static_dir / target``, refusing targets that would leave ``static_dir``."""
    rel = PurePosixPath(target)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise AssetError(f"unsafe target path {target!r}")
    return static_dir.joinpath(*rel.parts)


def missing_assets(static_dir: Path, assets: Iterable[Asset] = ASSETS) -> list[Asset]:
    """The assets whose target file is absent or empty under ``static_dir``."""
    missing = []
    for asset in assets:
        path = _target_path(static_dir, asset.target)
        if not path.is_file() or path.stat().st_size == 0:
            missing.append(asset)
    return missing


def read_members(tarball: Path, members: Iterable[str]) -> dict[str, bytes]:
    """Read the regular files ``members`` out of an npm tarball (nothing is written to disk).

    Member names are matched without the tarball's top folder (``package/`` for most packages).
    Links, devices and names with ``..`` or a leading ``/`` are never matched, so a crafted
    tarball cannot redirect a read; a member that is missing raises :class:`AssetError`.
    """
    wanted = set(members)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(tarball, mode="r:*") as tar:
            for info in tar:
                parts = PurePosixPath(info.name).parts
                if len(parts) < 2 or parts[0] == "/" or ".." in parts:
                    continue
                name = "/".join(parts[1:])
                if name not in wanted or name in found or not info.isreg():
                    continue
                handle = tar.extractfile(info)
                if handle is None:
                    continue
                with handle:
                    found[name] = handle.read()
    except (OSError, tarfile.TarError) as exc:
        raise AssetError(f"cannot read {tarball.name}: {exc}") from exc
    absent = sorted(wanted - found.keys())
    if absent:
        raise AssetError(f"{tarball.name} lacks {', '.join(absent)}")
    return found


def collect(tarballs: Mapping[str, Path], assets: Iterable[Asset]) -> dict[str, bytes]:
    """Map each asset's target to its content, read from ``tarballs`` (keyed by npm spec)."""
    by_spec: dict[str, list[Asset]] = {}
    for asset in assets:
        by_spec.setdefault(asset.spec, []).append(asset)
    contents: dict[str, bytes] = {}
    for spec, group in by_spec.items():
        if spec not in tarballs:
            raise AssetError(f"no tarball for {spec}")
        files = read_members(tarballs[spec], (a.member for a in group))
        for asset in group:
            if not files[asset.member]:
                raise AssetError(f"{spec}: {asset.member} is empty")
            contents[asset.target] = files[asset.member]
    return contents


def write_files(static_dir: Path, contents: Mapping[str, bytes]) -> None:
    """Write each ``target -> bytes`` under ``static_dir``, each file atomically."""
    for target, data in contents.items():
        with atomic_path(_target_path(static_dir, target)) as tmp:
            tmp.write_bytes(data)
            os.chmod(tmp, 0o644)


def write_marker(static_dir: Path, version: str) -> None:
    """Write visdom's ``version.built`` marker (``download_scripts`` then skips its fetch)."""
    with atomic_path(static_dir / VERSION_MARKER) as tmp:
        tmp.write_text(version)
        os.chmod(tmp, 0o644)


def npm_pack(specs: Sequence[str], dest: Path) -> dict[str, Path]:
    """Fetch ``specs`` (``name@version``) as tarballs into ``dest`` with ``npm pack``."""
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError(
            "`npm` was not found on PATH (install Node.js/npm, e.g. apt-get install npm)"
        )
    cmd = [npm, "pack", "--json", "--ignore-scripts", "--prefer-offline", *NPM_FETCH_OPTS]
    cmd += ["--pack-destination", str(dest), *specs]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AssetError(f"`npm pack` failed: {exc}") from exc
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("npm error")][:4]
        detail = "\n".join(errors) or proc.stderr.strip()[-800:]
        raise AssetError(
            f"`npm pack` exited with {proc.returncode} (npm registry unreachable?):\n{detail}"
        )
    try:
        packed = json.loads(proc.stdout)
        tarballs = {f"{d['name']}@{d['version']}": dest / d["filename"] for d in packed}
    except (ValueError, KeyError, TypeError) as exc:
        raise AssetError(f"cannot parse `npm pack --json` output: {exc}") from exc
    for spec in specs:
        if spec not in tarballs or not tarballs[spec].is_file():
            raise AssetError(f"`npm pack` produced no tarball for {spec}")
    return tarballs


def install(static_dir: Path, version: str, assets: Sequence[Asset] = ASSETS) -> int:
    """Install the missing assets and the version marker; return how many files were written."""
    missing = missing_assets(static_dir, assets)
    if missing:
        specs = sorted({a.spec for a in missing})
        print(
            f"visdom assets: fetching {len(specs)} npm package(s) for {len(missing)} file(s)",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="visdom-assets-") as tmp:
            tarballs = npm_pack(specs, Path(tmp))
            size = sum(p.stat().st_size for p in tarballs.values())
            print(f"visdom assets: got {size / 1e6:.1f} MB of npm tarballs")
            contents = collect(tarballs, missing)
        write_files(static_dir, contents)
        total = sum(len(b) for b in contents.values())
        print(
            f"visdom assets: wrote {len(contents)} file(s), {total / 1e6:.1f} MB, to {static_dir}"
        )
    else:
        print(f"visdom assets: all {len(assets)} files already present in {static_dir}")
    marker = static_dir / VERSION_MARKER
    if version != "no_version_file" and (
        not marker.is_file() or marker.read_text().strip() != version
    ):
        write_marker(static_dir, version)
    return len(missing)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.visdom_assets",
        description="Install visdom's web-UI files (JS/CSS/fonts) from the npm registry.",
    )
    parser.add_argument(
        "--static-dir",
        type=Path,
        default=None,
        help="visdom's static folder (default: the installed visdom package's)",
    )
    args = parser.parse_args(argv)
    version = visdom_version()
    if version != VISDOM_VERSION:
        print(
            f"visdom assets: warning: file list made for visdom {VISDOM_VERSION}, "
            f"installed is {version}",
            file=sys.stderr,
        )
    static_dir = args.static_dir if args.static_dir is not None else default_static_dir()
    try:
        install(static_dir, version)
    except (AssetError, OSError) as exc:
        print(f"visdom assets: error: {exc}", file=sys.stderr)
        print(
            "visdom assets: the visdom server still works (data API), but its browser page "
            "stays blank until this succeeds.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
