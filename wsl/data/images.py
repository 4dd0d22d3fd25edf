"""Image files: decode to 8-bit RGB, and check a VOC image at setup (strictly for JPEGs).

Data sets are read as stored (:func:`read_rgb`, :func:`read_rgb_tensor`): their boxes are on
the stored pixel array. Images from users (``wsl.predict``, ``Detector.detect``) are read upright
(:func:`read_upright_rgb`, :func:`read_upright_tensor`): turned as their EXIF orientation says,
as phones and photo viewers show them.

PIL decodes for training (:func:`read_rgb`), but libjpeg inside PIL swallows its
warnings, so a truncated JPEG with an end-of-image marker appended, or one whose scan
data were overwritten, decodes to half garbage without a word. :func:`check_image`
therefore also decodes each JPEG with OpenCV (the same libjpeg family) and treats any
message libjpeg prints while decoding as an error: libjpeg reports these damages only as
warnings on ``stderr`` ("Corrupt JPEG data: premature end of data segment", "... N
extraneous bytes before marker"), so ``stderr`` is captured around the decode.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps
from torch import Tensor
from torchvision.transforms.v2.functional import pil_to_tensor

from wsl.data.bad_input import DataError

VERIFY_IMAGE_CHOICES = ("header", "full", "none")
_JPEG_END = b"\xff\xd9"
_JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a camera's JPEG with extra pictures appended
# Integer modes PIL gives 16-bit images; ``convert("RGB")`` would clip them to 255.
_WIDE_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
MISSING = "no such file"
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _to_8bit(image: Image.Image, path: Path) -> Image.Image:
    """16-bit greyscale to 8-bit by bit depth (``value >> 8``, as torchvision's ``to_dtype``)."""
    if image.mode == "F":
        raise DataError(path, "32-bit float image: convert it to an 8-bit image")
    if image.mode not in _WIDE_INTEGER_MODES:
        return image
    values = np.asarray(image)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise DataError(
            path,
            f"32-bit integer image with values {values.min()}..{values.max()}: its bit depth "
            "is unknown; convert it to an 8-bit image",
        )
    return Image.fromarray((values.astype(np.uint32) >> 8).astype(np.uint8))


def read_rgb(path: Path) -> Image.Image:
    """Decode an image file to 8-bit RGB, as stored (EXIF orientation ignored), or raise
    :class:`DataError` naming it.

    16-bit images (PNG/TIFF modes ``I;16``, ``I``) are scaled by their bit depth, not
    clipped (PIL's own ``convert("RGB")`` turns them all white).
    """
    return _decode(path, upright=False)[0]


def read_rgb_tensor(path: Path) -> Tensor:
    """:func:`read_rgb` as a ``uint8`` 3xHxW tensor: a data set's image as stored, as the
    data set, ``wsl.inspect`` and the picture callbacks read it."""
    return pil_to_tensor(read_rgb(path))


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 to 8) that :func:`PIL.ImageOps.exif_transpose` turns ``image``
    by: 1 (as stored) when it has none or an invalid one."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return orientation if orientation in range(1, 9) else 1


def file_kind(path: Path) -> str | None:
    """``None`` for a regular file (or a link to one); else what ``path`` is, without opening it
    (reading a named pipe would wait for a writer forever)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a broken link" if path.is_symlink() else MISSING
    except OSError as error:
        return f"not readable ({error.strerror})"
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def read_upright_rgb(path: Path) -> tuple[Image.Image, int]:
    """Decode an image file to 8-bit RGB turned upright by its EXIF orientation (with
    :func:`PIL.ImageOps.exif_transpose`), and that orientation (:func:`exif_orientation`), or
    raise :class:`DataError` naming it. Only regular files are opened."""
    kind = file_kind(path)
    if kind == MISSING:
        raise DataError(path, MISSING)
    if kind is not None:
        raise DataError(path, f"{kind}, not an image file: give a regular image file")
    return _decode(path, upright=True)


def read_upright_tensor(
    path: Path, max_size: int | None = None
) -> tuple[Tensor, tuple[int, int], int]:
    """The image at ``path`` upright (:func:`read_upright_rgb`) as ``uint8 3xHxW``, downscaled
    so that its longer side is at most ``max_size`` (``None``: full size); its upright
    ``(height, width)`` at full size; the EXIF orientation it was turned by. ``wsl.predict``
    and ``Detector.detect`` read image files so."""
    image, orientation = read_upright_rgb(path)
    on_disk = (image.height, image.width)
    if max_size is not None and max(on_disk) > max_size:
        scale = max_size / max(on_disk)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return pil_to_tensor(image), on_disk, orientation


def _decode(path: Path, upright: bool) -> tuple[Image.Image, int]:
    """The image at ``path`` in 8-bit RGB, turned upright if asked, and its orientation then
    applied (1: as stored)."""
    try:
        with Image.open(path) as image:
            orientation = exif_orientation(image) if upright else 1
            turned = ImageOps.exif_transpose(image) if orientation != 1 else image
            return _to_8bit(turned, path).convert("RGB"), orientation
    except DataError:
        raise
    except Exception as error:  # PIL raises many types for corrupt files
        raise DataError(path, f"cannot decode image ({error})") from None


@contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Collect what C code writes to file descriptor 2 inside the block.

    A pipe holds it (64 KiB at least; libjpeg prints one line, its first warning).
    """
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield lines
    finally:
        os.dup2(saved, 2)  # closes the pipe's last write end: the read below ends
        os.close(saved)
        with os.fdopen(read_end, "rb") as pipe:
            lines.extend(pipe.read().decode(errors="replace").strip().splitlines())


def decode_jpeg_strictly(path: Path, data: bytes, full_size: bool) -> None:
    """Decode JPEG ``data`` with libjpeg (OpenCV); any decoder warning is a :class:`DataError`.

    Without ``full_size`` the image is decoded in grey at 1/8 scale: libjpeg still
    entropy-decodes every block (where damage shows), but skips most of the rest.
    """
    flag = cv2.IMREAD_COLOR if full_size else cv2.IMREAD_REDUCED_GRAYSCALE_8
    with _captured_stderr() as messages:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if messages or decoded is None:
        why = messages[0] if messages else "libjpeg cannot decode it"
        raise DataError(path, f"JPEG is corrupt: {why}")


def check_verify_choice(verify: str) -> None:
    """Raise unless ``data.verify_images`` is one of :data:`VERIFY_IMAGE_CHOICES`."""
    if verify not in VERIFY_IMAGE_CHOICES:
        raise ValueError(
            f"data.verify_images={verify!r} is not valid; choose one of {VERIFY_IMAGE_CHOICES}"
        )


def header_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the image header, or ``None`` if it does not open (whoever reads
    the image reports that)."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # PIL raises many types for corrupt files
        return None


def check_image(
    path: Path, verify: str, size: tuple[int, int] | None = None, jpeg_only: bool = True
) -> tuple[int, int]:
    """Check that an image exists, decodes cleanly and, when ``size`` is given, is
    ``width x height``; return its size (from the header).

    ``verify``: ``none`` checks nothing (without ``size`` it only reads the header's);
    ``header`` opens the file (with ``jpeg_only`` its real format must be JPEG, as VOC's and
    COCO's images are), compares the size and, for a JPEG, looks for the end-of-image marker
    and decodes the compressed data strictly at 1/8 scale; ``full`` decodes a JPEG strictly
    at full size instead, and every image once more with PIL, exactly as training reads it.
    """
    if verify == "none" and size is not None:
        return size
    if not path.is_file():
        raise DataError(path, "image file does not exist")
    try:
        with Image.open(path) as image:
            real_size, real_format = image.size, image.format
    except Exception as error:  # PIL raises many types for corrupt files
        raise DataError(path, f"not a readable image ({error})") from None
    if verify == "none":
        return real_size
    is_jpeg = real_format in _JPEG_FORMATS
    if jpeg_only and not is_jpeg:
        raise DataError(
            path, f"is a {real_format} image, not a JPEG: convert it to JPEG (VOC images are JPEGs)"
        )
    if size is not None and real_size != size:
        raise DataError(
            path,
            f"image is {real_size[0]}x{real_size[1]} but its annotation says {size[0]}x{size[1]}",
        )
    if is_jpeg:
        data = path.read_bytes()
        if not data.endswith(_JPEG_END):
            raise DataError(path, "JPEG is truncated (no end-of-image marker)")
        decode_jpeg_strictly(path, data, full_size=verify == "full")
    if verify == "full":
        read_rgb(path)
    return real_size
