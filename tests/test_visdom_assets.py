"""tools.visdom_assets with tarballs built here (npm and the network are never used)."""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tools import visdom_assets as va
from tools.visdom_assets import ASSETS, Asset, AssetError

VERSION = "9.9.9"


def _tarball(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """Write a gzipped tarball holding ``members`` (and symlinks ``name -> target``)."""
    with tarfile.open(path, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def _content(asset: Asset) -> bytes:
    return f"{asset.spec}:{asset.member}\n".encode()


def _fake_npm(
    tmp_path: Path, calls: list[Sequence[str]], drop: str | None = None
) -> Callable[..., dict[str, Path]]:
    """An ``npm_pack`` stand-in building one tarball per spec from :data:`ASSETS`."""

    def npm_pack(specs: Sequence[str], dest: Path) -> dict[str, Path]:
        calls.append(list(specs))
        out = {}
        for spec in specs:
            members = {f"package/{a.member}": _content(a) for a in ASSETS if a.spec == spec}
            members.pop(f"package/{drop}", None)
            out[spec] = _tarball(dest / f"{spec.replace('@', '-')}.tgz", members)
        return out

    return npm_pack


def test_read_members_strips_top_folder_and_skips_unsafe(tmp_path: Path) -> None:
    tgz = _tarball(
        tmp_path / "p.tgz",
        {"package/dist/a.js": b"a", "other-root/b.css": b"b", "../evil/c.js": b"x"},
        links={"package/c.js": "/etc/passwd"},
    )
    assert va.read_members(tgz, ["dist/a.js", "b.css"]) == {"dist/a.js": b"a", "b.css": b"b"}
    with pytest.raises(AssetError, match=r"lacks c\.js"):
        va.read_members(tgz, ["c.js"])  # the symlink is not read
    with pytest.raises(AssetError, match="lacks"):
        va.read_members(tgz, ["evil/c.js"])


def test_read_members_bad_tarball(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(AssetError, match=r"cannot read bad\.tgz"):
        va.read_members(bad, ["x"])


def test_target_path_stays_inside(tmp_path: Path) -> None:
    assert va._target_path(tmp_path, "js/a.js") == tmp_path / "js" / "a.js"
    for target in ("../a.js", "/etc/a.js", "js/../../a.js"):
        with pytest.raises(AssetError, match="unsafe"):
            va._target_path(tmp_path, target)


def test_install_writes_everything_then_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Sequence[str]] = []
    monkeypatch.setattr(va, "npm_pack", _fake_npm(tmp_path, calls))
    static = tmp_path / "static"
    assert va.install(static, VERSION) == len(ASSETS)
    assert calls == [sorted({a.spec for a in ASSETS})]
    for asset in ASSETS:
        assert (static / asset.target).read_bytes() == _content(asset)
    assert (static / "version.built").read_text() == VERSION
    assert not list(static.rglob("*.tmp"))

    assert va.install(static, VERSION) == 0  # nothing missing: npm is not run again
    assert len(calls) == 1

    (static / "js" / "sjcl.js").write_bytes(b"")  # an empty file counts as missing
    assert va.install(static, VERSION) == 1
    assert calls[-1] == ["sjcl@1.0.7"]


def test_failure_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Sequence[str]] = []
    monkeypatch.setattr(va, "npm_pack", _fake_npm(tmp_path, calls, drop="sjcl.js"))
    static = tmp_path / "static"
    with pytest.raises(AssetError, match=r"lacks sjcl\.js"):
        va.install(static, VERSION)
    assert not static.exists() or not [p for p in static.rglob("*") if p.is_file()]


def test_main_reports_missing_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(va.shutil, "which", lambda _name: None)
    static = tmp_path / "static"
    assert va.main(["--static-dir", str(static)]) == 1
    assert "`npm` was not found" in capsys.readouterr().err
    assert not static.exists()


def test_assets_cover_visdom_index_html() -> None:
    """Every ``static_url`` of visdom's page is an asset here or ships with visdom."""
    index = Path(va.default_static_dir(), "index.html").read_text()
    wanted = set(re.findall(r"static_url\(\s*[\"']([^\"']+)[\"']\s*\)", index))
    shipped = {"js/main.js", "css/style.css", "css/network.css", "../user/style.css"}
    assert wanted, "no static_url found in visdom's index.html"
    assert wanted - shipped <= {a.target for a in ASSETS}


def test_visdom_download_scripts_finds_nothing_to_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the targets and marker in place, visdom's own fetcher requests no URL."""
    import requests
    from visdom.server import build

    static = tmp_path / "static"
    for asset in ASSETS:
        path = static / asset.target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    va.write_marker(static, va.visdom_version())

    requested: list[object] = []

    class Opener:
        def open(self, req: object) -> None:
            requested.append(req)
            raise AssertionError("network")

    monkeypatch.setattr(build.request, "build_opener", lambda *_a: Opener())
    monkeypatch.setattr(build.request, "install_opener", lambda _o: None)
    monkeypatch.setattr(requests, "get", lambda *a, **_k: requested.append(a))
    build.download_scripts(install_dir=str(tmp_path))
    assert requested == []
