"""Where region proposals come from: a proposal method, chosen by ``data.proposals._target_``.

A proposal method is a class with ``load(image_ids, image_paths)`` and ``source(image_id,
image_path)`` (:class:`~wsl.data.voc.ProposalProvider`) and ``for_split(split)`` giving the
provider of a split; ``data.proposals._target_`` names it (``conf/data/proposals/``): files
with :class:`MatProposalFiles` (read by :mod:`wsl.data.proposal_mat`), computed with
:class:`~wsl.data.selective_search.SelectiveSearchProposals`. Every method gives
:class:`~wsl.structures.proposals.Proposals`; :class:`~wsl.data.proposal_filter.ProposalFilter`
then keeps the useful ones.

A problem of one image's entry is reported through ``data.on_error`` (raise, or skip that
image). A problem of the whole file stops the run whatever ``data.on_error`` says: a file
whose counts disagree, that lacks more than ``FILE_ERROR_SHARE`` of the split's images, or
where more than ``FILE_ERROR_SHARE`` of the images have a box outside the image (a wrong
``box_layout``, or a file without ids made for another image order). A correct file has
no box outside its image (``setup_voc07_eb.m`` in hbilen/WSDDN stops on the first one).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from wsl.data.bad_input import ON_ERROR_CHOICES
from wsl.data.proposal_mat import (
    ProposalLookup,
    align,
    check_fit,
    check_layout,
    load_proposal_mat,
)


class MatProposals:
    """Proposals from a ``.mat`` file (a ``_target_`` for Hydra).

    Args:
        path: the Fast R-CNN selective-search or EdgeBoxes file.
        box_layout: column order in the file, ``yxyx`` (Fast R-CNN, WSDDN) or ``xyxy``.
        on_error: ``data.on_error``; with ``skip`` an image the file lacks is skipped
            (counted by the index), with ``raise`` it is an error.
    """

    def __init__(self, path: str, box_layout: str = "yxyx", on_error: str = "raise") -> None:
        check_layout(box_layout)
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(
                f"on_error={on_error!r} is not valid; choose one of {ON_ERROR_CHOICES}"
            )
        self.path = Path(path)
        self.box_layout = box_layout
        self.on_error = on_error

    def load(self, image_ids: list[str], image_paths: list[Path] | None = None) -> ProposalLookup:
        """Unfiltered proposals of each image id, after the whole-file checks.

        With ``image_paths`` the boxes are checked against the image sizes (read from the
        image headers): too many images with a box outside is the file's error.
        """
        mat = load_proposal_mat(self.path, self.box_layout)
        lookup = align(mat, image_ids, skip_missing=self.on_error == "skip")
        if image_paths is not None:
            why = (
                f"the whole file does not fit these images (box_layout={self.box_layout!r} wrong, "
                "or a file without ids in another order)"
            )
            check_fit(self.path, lookup, image_ids, image_paths, why)
        return lookup

    def source(self, image_id: str, image_path: Path) -> str:
        """Where one image's proposals come from, for error messages."""
        return f"{self.path}[{image_id}]"


class JoinedProposals:
    """The proposals of a joined VOC split: each image's from its devkit folder's provider
    (``VOC2012`` for ``VOCdevkit/VOC2012/JPEGImages/x.jpg``; ``""`` for a part named without
    a folder: the images of every other folder)."""

    def __init__(self, by_folder: Mapping[str, MatProposals]) -> None:
        self.by_folder = dict(by_folder)

    def _provider(self, image_path: Path) -> MatProposals:
        folder = Path(image_path).parents[1].name
        return self.by_folder.get(folder) or self.by_folder[""]

    def load(self, image_ids: list[str], image_paths: list[Path]) -> ProposalLookup:
        """Each part's images' proposals from its provider."""
        groups: dict[int, tuple[MatProposals, list[str], list[Path]]] = {}
        for image_id, path in zip(image_ids, image_paths, strict=True):
            provider = self._provider(path)
            group = groups.setdefault(id(provider), (provider, [], []))
            group[1].append(image_id)
            group[2].append(path)
        joined = ProposalLookup({})
        for provider, ids, paths in groups.values():
            lookup = provider.load(ids, paths)
            joined.found.update(lookup.found)
            joined.missing.update(lookup.missing)
        return joined

    def source(self, image_id: str, image_path: Path) -> str:
        return self._provider(image_path).source(image_id, image_path)


class MatProposalFiles:
    """One ``.mat`` proposal file per split (a ``_target_``: ``data/proposals=mat`` or
    ``edgeboxes``); :meth:`for_split` gives the :class:`MatProposals` of a split.

    Args:
        trainval_mat: the file of ``train``, ``val`` and ``trainval`` (Fast R-CNN and WSDDN
            each ship one file for trainval and one for test).
        test_mat: the file of ``test``.
        mat_files: the file of any other split, or another file for one of those four.
        box_layout, on_error: as :class:`MatProposals`.
    """

    def __init__(
        self,
        trainval_mat: str,
        test_mat: str,
        mat_files: Mapping[str, str] | None = None,
        box_layout: str = "yxyx",
        on_error: str = "raise",
    ) -> None:
        check_layout(box_layout)
        trainval = dict.fromkeys(("train", "val", "trainval"), str(trainval_mat))
        self.files = {**trainval, "test": str(test_mat), **dict(mat_files or {})}
        self.box_layout = box_layout
        self.on_error = on_error

    def for_split(self, split: str) -> MatProposals | JoinedProposals:
        """The proposals of ``split``, from its file; a joined split's (``VOC2007/trainval+
        VOC2012/trainval``, :mod:`wsl.data.voc`) from each part's file."""
        if "+" in split and split not in self.files:
            parts = split.split("+")
            return JoinedProposals({p.rpartition("/")[0]: self.for_split(p) for p in parts})
        if split not in self.files:
            raise ValueError(
                f"no proposal file for split {split!r} (there are files for {sorted(self.files)}); "
                f"add +data.proposals.mat_files.{split}=PATH"
            )
        return MatProposals(self.files[split], box_layout=self.box_layout, on_error=self.on_error)
