"""Images with tags only (no boxes): :class:`ImageTagsIndex`, read through
:class:`ImageTagsLayout` (``data/layout=image_tags``).

``data.root`` holds ``labels.csv`` and the images, anywhere under it::

    image,labels,split
    photos/cat 1.jpg,cat,train
    "photos/cat, dog.png","cat;dog",train
    street.jpg,,val
    park/dog.jpg,dog; person,test

- Columns (a header row is required, names matched exactly, whitespace around them ignored):
  ``image``, a path under ``data.root`` with ``/`` between folders, each part a plain name
  (:func:`~wsl.runtime.names.name_problem`: ``../x.jpg`` or ``/x.jpg`` cannot leave the data
  set); ``labels``, class names separated by ``;`` (whitespace around a name and empty names,
  as in ``cat;``, are dropped; a name listed twice counts once; an empty field: the image is
  negative for every class); optional ``split``: ``train``, ``val`` or ``test``. Other columns
  are ignored (a file exported with extra columns such as a photographer or a licence reads as
  is).
- The CSV is read with Python's :mod:`csv` (comma separated, UTF-8 with or without a
  byte-order mark, spaces after a comma skipped): a field holding a comma, such as a path, must
  be quoted (``"a, b.jpg"``); quoting a labels field (``"cat;dog"``) is allowed. ``;`` always
  separates names, quoted or not. A quote that is never closed is an error, not a field that
  swallows the rest of the file.
- Classes: ``data.classes`` when given, else ``classes.txt`` of ``data.root`` when present (one
  name per line, in label order), else the sorted set of the names used in the whole CSV (every
  split, so all splits share one class list). A name not in a given list is an error.
- An image's id is its path without the extension, ``/`` replaced by ``_``
  (``photos/cat 1.jpg`` -> ``photos_cat 1``). Ids must be distinct: two rows of one id (the
  same row twice, ``a/b.jpg`` and ``a_b.png``, ``a.jpg`` and ``a.png``) are an error naming
  both lines.
- Splits: ``data.train_split`` etc. name ``train``, ``val``, ``test`` or ``trainval`` (train and
  val). Without a ``split`` column the rows are split at random, seeded by
  ``data.layout.split_seed`` (0) in the fractions ``split_fractions`` (``{train: 0.8,
  val: 0.1, test: 0.1}``): the rows sorted by their ``image`` field are permuted by
  ``numpy.random.default_rng(split_seed)``, and the first ``round(0.8 n)`` of that permutation
  are train, the next val, the rest test (counts rounded by largest remainder, so they sum to
  n). Reordering the rows of the CSV therefore moves no image to another split; adding or
  removing a row may move many. Every row takes part, bad ones included, so a row skipped with
  ``data.on_error=skip`` moves no other. Records keep the CSV's row order.
- The width and height come from each image's header (:func:`~wsl.data.images.check_image`,
  ``data.verify_images``); any format PIL reads is accepted, not only JPEG.

Errors are :class:`~wsl.data.bad_input.DataError` s naming ``labels.csv`` and the line (an
image's own problem names the image file too). A problem of the file's structure stops the run
whatever ``data.on_error`` says: no ``labels.csv``, text that is not UTF-8 or not valid CSV, a
header without ``image`` or ``labels`` or naming a column twice, a row with another number of
fields than the header (often an unquoted comma), a ``split`` value other than train, val or
test, two rows of one image id, a split without any row. A problem of one row's content (its
image path, a class name that is not a plain name or not in the class list, a missing or
unreadable image) skips that row with ``data.on_error=skip`` (counted and logged); only the
rows of the split being read are checked so.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from wsl.data.annotations import ImageAnnotation, read_class_list
from wsl.data.bad_input import BadInputPolicy, DataError
from wsl.data.images import check_image, check_verify_choice
from wsl.data.labels import check_difficult_labels
from wsl.data.proposal_filter import ProposalFilter
from wsl.data.split_index import ImageRecord, ProposalProvider, SplitIndex
from wsl.runtime.names import contained_path, name_problem
from wsl.runtime.settings import SettingError

LABELS_FILE = "labels.csv"
CLASSES_FILE = "classes.txt"
REQUIRED_COLUMNS = ("image", "labels")
SPLIT_COLUMN = "split"
ROW_SPLITS = ("train", "val", "test")
SPLIT_PARTS = {
    "train": ("train",),
    "val": ("val",),
    "test": ("test",),
    "trainval": ("train", "val"),
}
DEFAULT_SPLIT_FRACTIONS: Mapping[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
LAYOUT_OPTIONS = ("split_seed", "split_fractions")


@dataclass(frozen=True)
class _Row:
    """One data row of ``labels.csv``: the line it starts on and its fields by column."""

    line: int
    image: str
    labels: str
    split: str | None


@dataclass(frozen=True)
class _Table:
    path: Path
    rows: list[_Row]
    has_split_column: bool


class ImageTagsLayout:
    """The image-tags layout (``data/layout=image_tags``; a ``_target_``).

    Args:
        split_seed, split_fractions: the seeded split of a CSV without a ``split`` column (see
            :class:`ImageTagsIndex`); checked here, so a bad setting fails before any reading.
    """

    def __init__(self, split_seed: int = 0, split_fractions: Mapping[str, float] | None = None):
        _check_seed(split_seed)
        _split_fractions(split_fractions)
        self.split_seed = split_seed
        self.split_fractions = None if split_fractions is None else dict(split_fractions)

    def split_name(self, split: str) -> str:
        """``split`` itself: ``train``, ``val``, ``test`` or ``trainval``."""
        return split

    def index(self, root: str | Path, split: str, **settings: Any) -> ImageTagsIndex:
        """The :class:`ImageTagsIndex` of ``split``."""
        return ImageTagsIndex(
            root, split, split_seed=self.split_seed, split_fractions=self.split_fractions,
            **settings,
        )  # fmt: skip

    def classes(self, root: str | Path, split: str) -> tuple[tuple[str, ...], str]:
        """``classes.txt`` of ``data.root``, else the sorted names of ``labels.csv``."""
        return ImageTagsIndex.dataset_classes(root, split)


class ImageTagsIndex(SplitIndex):
    """All usable images of one split of a folder of images with ``labels.csv`` (see the
    module docstring).

    Args:
        root: folder holding ``labels.csv`` (and ``classes.txt``, optional) and the images.
        split: ``train``, ``val``, ``test`` or ``trainval``.
        classes: class names in label order; ``None`` reads ``classes.txt`` or uses the sorted
            names of the CSV.
        difficult_labels: accepted for the common signature (checked; no image has difficult
            objects here).
        proposals, proposal_filter, on_error, verify_images: as :class:`~wsl.data.voc.VOCIndex`.
        split_seed: the seed of the random split used where the CSV has no ``split`` column.
        split_fractions: the fractions of that split by name (``train``, ``val``, ``test``;
            a name left out gets none); they must sum to 1. ``None``: 0.8, 0.1, 0.1.
    """

    writes_devkit_results = False  # no boxes to score, and ids are free text

    def __init__(
        self,
        root: str | Path,
        split: str,
        classes: Sequence[str] | None = None,
        difficult_labels: str = "positive",
        proposals: ProposalProvider | None = None,
        proposal_filter: ProposalFilter | None = None,
        on_error: str = "raise",
        verify_images: str = "header",
        split_seed: int = 0,
        split_fractions: Mapping[str, float] | None = None,
    ) -> None:
        check_verify_choice(verify_images)
        check_difficult_labels(difficult_labels)
        if split not in SPLIT_PARTS:
            raise SettingError(
                f"split {split!r} is not valid with data.layout=image_tags; choose one of "
                f"{list(SPLIT_PARTS)} (the split column of labels.csv, or a seeded split)"
            )
        _check_seed(split_seed)
        fractions = _split_fractions(split_fractions)
        root = Path(root)
        policy = BadInputPolicy(on_error)
        table = _read_table(root)
        classes = tuple(classes) if classes else _dataset_classes(root, table)[0]
        _check_distinct_ids(table)
        if table.has_split_column:
            splits = [row.split for row in table.rows]
        else:
            splits = seeded_splits([row.image for row in table.rows], split_seed, fractions)
        wanted = SPLIT_PARTS[split]
        rows = [
            row for row, row_split in zip(table.rows, splits, strict=True) if row_split in wanted
        ]
        if not rows:
            how = "its split column" if table.has_split_column else "the seeded split"
            raise DataError(table.path, f"split {split!r} has no image ({how})")
        index = {name: i for i, name in enumerate(classes)}
        records = []
        for row in rows:
            try:
                records.append(_record(root, table.path, row, index, verify_images))
            except DataError as error:
                policy.report(error)
        self.labels_file = table.path
        super().__init__(
            root, split, classes, policy, records, has_boxes=False, proposals=proposals,
            proposal_filter=proposal_filter,
        )  # fmt: skip

    @staticmethod
    def dataset_classes(
        root: str | Path, split: str | None = None, **options: Any
    ) -> tuple[tuple[str, ...], str]:
        """The data set's class list and where it comes from, as a phrase for messages:
        ``<root>/classes.txt`` when present, else the sorted names of ``labels.csv`` (the same
        for every split: ``split`` is not used). ``options`` are the layout's own
        (``split_seed``, ``split_fractions``: checked; the class list does not depend on them)."""
        unknown = sorted(set(options) - set(LAYOUT_OPTIONS))
        if unknown:
            raise SettingError(
                f"{unknown} are not options of data.layout=image_tags "
                f"(its options: {list(LAYOUT_OPTIONS)})"
            )
        root = Path(root)
        if (root / CLASSES_FILE).is_file():
            return read_class_list(root), str(root / CLASSES_FILE)
        return _dataset_classes(root, _read_table(root))


def _check_seed(split_seed: Any) -> None:
    if not isinstance(split_seed, int) or isinstance(split_seed, bool) or split_seed < 0:
        raise SettingError(
            f"data.layout.split_seed={split_seed!r} is not allowed: it must be an integer >= 0"
        )


def _split_fractions(split_fractions: Mapping[str, float] | None) -> dict[str, float]:
    """The fractions of the seeded split, checked, with every split named."""
    given = dict(DEFAULT_SPLIT_FRACTIONS if split_fractions is None else split_fractions)
    key = "data.layout.split_fractions"
    unknown = [name for name in given if name not in ROW_SPLITS]
    if unknown:
        raise SettingError(f"{key} names {unknown}: the splits are {list(ROW_SPLITS)}")
    for name, value in given.items():
        valid = isinstance(value, int | float) and not isinstance(value, bool)
        if not (valid and math.isfinite(value) and value >= 0):
            raise SettingError(f"{key}.{name}={value!r} is not allowed: it must be a number >= 0")
    total = sum(given.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise SettingError(f"{key} {given} sum to {total:g}, not 1")
    return {name: float(given.get(name, 0.0)) for name in ROW_SPLITS}


def seeded_splits(images: Sequence[str], seed: int, fractions: Mapping[str, float]) -> list[str]:
    """The split of each image of a CSV without a ``split`` column (see the module docstring):
    independent of the order of ``images``."""
    count = len(images)
    shares = [fractions[name] * count for name in ROW_SPLITS]
    counts = [math.floor(share) for share in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (counts[i] - shares[i], i))
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    by_path = sorted(range(count), key=lambda i: images[i])
    permuted = np.random.default_rng(seed).permutation(count)
    names = [name for name, n in zip(ROW_SPLITS, counts, strict=True) for _ in range(n)]
    splits = [""] * count
    for name, position in zip(names, permuted, strict=True):
        splits[by_path[position]] = name
    return splits


def _read_table(root: Path) -> _Table:
    """The rows of ``<root>/labels.csv``, its structure checked (see the module docstring)."""
    path = root / LABELS_FILE
    if not path.is_file():
        raise DataError(
            path,
            "not found: data.layout=image_tags reads labels.csv in data.root (columns image, "
            "labels and optionally split)",
        )
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            records = _csv_records(path, file)
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text ({error})") from None
    if not records:
        raise DataError(path, "is empty: it needs a header row (image,labels[,split])")
    header_line, header = records[0]
    columns = [name.strip() for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise DataError(
            path,
            f"line {header_line}: the header row {columns} lacks the column(s) {missing}; "
            "labels.csv starts with a header row such as image,labels,split",
        )
    twice = sorted({name for name in columns if columns.count(name) > 1})
    if twice:
        raise DataError(path, f"line {header_line}: the header row names {twice} twice")
    where = {
        name: columns.index(name) for name in (*REQUIRED_COLUMNS, SPLIT_COLUMN) if name in columns
    }
    rows = []
    for line, fields in records[1:]:
        if len(fields) != len(columns):
            raise DataError(
                path,
                f"line {line}: {len(fields)} field(s) but the header has {len(columns)} "
                f'({",".join(columns)}); a field holding a comma must be quoted ("a, b.jpg")',
            )
        split = fields[where[SPLIT_COLUMN]].strip() if SPLIT_COLUMN in where else None
        if split is not None and split not in ROW_SPLITS:
            raise DataError(
                path,
                f"line {line}: split {split!r} is not one of {', '.join(ROW_SPLITS)}; every row "
                "of a file with a split column names its split",
            )
        image = fields[where["image"]].strip()
        rows.append(_Row(line, image, fields[where["labels"]], split))
    if not rows:
        raise DataError(path, "has a header but no image rows")
    return _Table(path, rows, SPLIT_COLUMN in where)


def _csv_records(path: Path, file: Any) -> list[tuple[int, list[str]]]:
    """The non-blank records of a CSV file with the line each starts on."""
    reader = csv.reader(file, skipinitialspace=True, strict=True)
    records = []
    start = 1
    try:
        for fields in reader:
            if any(field.strip() for field in fields):
                records.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as error:
        raise DataError(path, f"line {start}: not valid CSV ({error})") from None
    return records


def _names(field: str) -> list[str]:
    """The class names of a labels field: split at ``;``, stripped, empty ones dropped, each
    once, in the order written."""
    names = [name.strip() for name in field.split(";")]
    return list(dict.fromkeys(name for name in names if name))


def _dataset_classes(root: Path, table: _Table) -> tuple[tuple[str, ...], str]:
    """``classes.txt`` when present, else the sorted plain names of the CSV (a name that is not
    plain is the error of its row, reported when its split is read)."""
    if (root / CLASSES_FILE).is_file():
        return read_class_list(root), str(root / CLASSES_FILE)
    names = {
        name for row in table.rows for name in _names(row.labels) if name_problem(name) is None
    }
    if not names:
        raise DataError(
            table.path,
            f"no row has a label: the class list comes from the labels of {LABELS_FILE}, or "
            f"from {CLASSES_FILE} in data.root",
        )
    return tuple(sorted(names)), f"the labels of {table.path}"


def _image_parts(image: str) -> list[str] | None:
    """The parts of an image path, or ``None`` where it is not a relative path of plain names."""
    parts = image.split("/")
    if any(name_problem(part) is not None for part in parts):
        return None
    return parts


def image_id(image: str) -> str:
    """The id of an image path: without its extension, ``/`` replaced by ``_``."""
    return str(PurePosixPath(image).with_suffix("")).replace("/", "_")


def _check_distinct_ids(table: _Table) -> None:
    """Two rows of one image id (of any split) are an error naming both lines."""
    first: dict[str, _Row] = {}
    for row in table.rows:
        if _image_parts(row.image) is None:
            continue  # the row's own error, reported when its split is read
        key = image_id(row.image)
        if key in first:
            earlier = first[key]
            raise DataError(
                table.path,
                f"lines {earlier.line} and {row.line}: images {earlier.image!r} and "
                f"{row.image!r} have the same id {key!r} (the path without its extension, / "
                "as _): every image must be listed once, under distinct ids",
            )
        first[key] = row


def _record(
    root: Path, csv_path: Path, row: _Row, index: Mapping[str, int], verify_images: str
) -> ImageRecord:
    """One row as a record, or a :class:`DataError` naming the CSV and the line."""
    where = f"line {row.line}"
    try:
        image_path = contained_path(root, *row.image.split("/"))
    except ValueError as error:
        raise DataError(
            csv_path,
            f"{where}: image {row.image!r} is not a relative path under data.root with / "
            f"between plain names ({error})",
        ) from None
    key = image_id(row.image)
    problem = name_problem(key)
    if problem is not None:
        raise DataError(csv_path, f"{where}: image {row.image!r} gives the id {key!r} ({problem})")
    labels = np.zeros(len(index), dtype=np.float32)
    for name in _names(row.labels):
        problem = name_problem(name)
        if problem is not None:
            raise DataError(
                csv_path,
                f"{where}: class name {name!r} is not a plain name ({problem}); class names "
                "become file names (comp4_det_<split>_<class>.txt): rename the class",
            )
        if name not in index:
            raise DataError(
                csv_path,
                f"{where}: class {name!r} is not in the class list ({', '.join(index)})",
            )
        labels[index[name]] = 1.0
    try:
        width, height = check_image(image_path, verify_images, jpeg_only=False)
    except DataError as error:
        raise DataError(csv_path, f"{where}: image {error}") from None
    annotation = ImageAnnotation(key, row.image, width, height, 3, False, ())
    return ImageRecord(annotation, image_path, labels, np.ones(len(index), dtype=np.float32))
