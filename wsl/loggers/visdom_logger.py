"""A Lightning logger that draws metrics, images, figures and bars on a visdom server.

Visdom is optional at run time: if the server cannot be reached (at start or later), the
logger warns once, naming the address, and every later call does nothing, so the run
carries on with the other loggers (TensorBoard). Start a server offline with ``make visdom``.

Each run logs to its own env, named after its run directory (:func:`run_env_name`), so runs
do not overwrite each other's windows; once connected, the logger says where
(``visdom: logging to http://127.0.0.1:8097/env/<env>``).
"""

from __future__ import annotations

import html
import io
import logging
import re
import warnings
from argparse import Namespace
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_fabric.utilities.logger import _convert_params, _flatten_dict
from matplotlib.figure import Figure
from PIL import Image
from pytorch_lightning.loggers import Logger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only
from visdom import Visdom

# (connect, read) seconds for every request: an unreachable host fails fast, while a
# large image or an env save on a busy server still has time to finish.
_TIMEOUT_S = (2.0, 30.0)
_HPARAMS_WIN = "hparams"
# Characters an env name may hold: the server saves an env as <env_path>/<env>.json, maps "/"
# to "_" on its side (so the client would look in another env) and shows envs in URLs
# (/env/<env>); its env list groups names by the part before the first "_".
_ENV_CHARACTERS = re.compile(r"[A-Za-z0-9_.-]+")

log = logging.getLogger(__name__)


def run_env_name(run_dir: str | Path, log_dir: str | Path) -> str:
    """The visdom env of the run in ``run_dir``: its path below ``log_dir`` with ``/`` made
    ``_`` and other characters that an env name cannot hold made ``-``, e.g.
    ``outputs/runs/train/2026-12-01_08-43-33`` -> ``runs_train_2026-12-01_08-43-33`` (a run
    directory outside ``log_dir``: its own name)."""
    run_dir, log_dir = Path(run_dir).resolve(), Path(log_dir).resolve()
    parts = run_dir.relative_to(log_dir).parts if run_dir.is_relative_to(log_dir) else ()
    parts = parts or (run_dir.name,)
    return "_".join(re.sub(r"[^A-Za-z0-9_.-]", "-", part) for part in parts)


class _TimeoutVisdom(Visdom):
    """Visdom client whose requests time out (upstream posts without a timeout)."""

    def _handle_post(self, url: str, data: Any = None) -> str:
        return self.session.post(url, data={} if data is None else data, timeout=_TIMEOUT_S).text


def _as_chw_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Return ``image`` (HW, CHW or HWC; uint8, or float in [0, 1]) as a uint8 CHW array."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 2:
        array = array[None]
    elif array.ndim != 3:
        raise ValueError(f"image must be HW, CHW or HWC; got shape {array.shape}")
    elif array.shape[0] not in (1, 3, 4):
        if array.shape[-1] not in (1, 3, 4):
            raise ValueError(f"image must have 1, 3 or 4 channels; got shape {array.shape}")
        array = array.transpose(2, 0, 1)
    if array.shape[0] == 1:
        array = array.repeat(3, axis=0)
    if array.dtype != np.uint8:
        array = np.rint(np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    return array


def _figure_to_array(figure: Figure) -> np.ndarray:
    """Render ``figure`` to an RGB uint8 HWC array (works whatever canvas it was made with)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    with Image.open(buffer) as png:
        return np.asarray(png.convert("RGB"))


class VisdomLogger(Logger):
    """Log to the visdom env ``env`` at ``server:port``; connects on first use.

    With ``env=None`` the env is the run's, :func:`run_env_name` of ``run_dir`` below
    ``log_dir`` (``"wsl"`` without a ``run_dir``). A given ``env`` must hold only letters,
    digits, ``_``, ``.`` and ``-``.

    Windows: one line plot per metric name, one text window ``hparams``, one window per
    image/figure/bar tag (logging the same tag again replaces it). Window ids are the
    metric names and tags themselves. With ``offline_ok=False`` an unreachable server
    raises ``ConnectionError`` instead of warning.
    """

    def __init__(
        self,
        server: str = "http://127.0.0.1",
        port: int = 8097,
        env: str | None = None,
        run_dir: str | Path | None = None,
        log_dir: str | Path = "outputs",
        name: str = "wsl",
        version: str | int | None = None,
        offline_ok: bool = True,
    ) -> None:
        super().__init__()
        self._server = server
        self._port = port
        if env is None:
            env = "wsl" if run_dir is None else run_env_name(run_dir, log_dir)
        elif not _ENV_CHARACTERS.fullmatch(env):
            raise ValueError(
                f"visdom env {env!r}: use only letters, digits, '_', '.' and '-' (visdom saves "
                "an env as <env>.json, maps '/' to '_' and shows the name in URLs)"
            )
        self._env = env
        self._name = name
        self._version = version
        self._offline_ok = offline_ok
        self._vis: Visdom | None = None
        self._unavailable = False
        self._plotted: set[str] = set()

    @property
    def name(self) -> str:
        """The experiment name."""
        return self._name

    @property
    def version(self) -> str | int | None:
        """The experiment version, as given."""
        return self._version

    @property
    def env(self) -> str:
        """The visdom env every window goes to."""
        return self._env

    @property
    def address(self) -> str:
        """``server:port`` of the visdom server."""
        return f"{self._server}:{self._port}"

    @property
    @rank_zero_experiment
    def experiment(self) -> Visdom | None:
        """The connected visdom client, or ``None`` when the server is unreachable."""
        if self._vis is None and not self._unavailable:
            # visdom's client logs "Setting up a new session..." and socket notes as warnings.
            logging.getLogger("visdom").setLevel(logging.ERROR)
            try:
                vis = _TimeoutVisdom(
                    server=self._server,
                    port=self._port,
                    env=self._env,
                    raise_exceptions=True,
                    use_incoming_socket=False,
                )
                if not vis.check_connection():
                    raise ConnectionError("the server did not answer like a visdom server")
            except ConnectionError as error:
                self._give_up(error)
            else:
                self._vis = vis
                log.info("visdom: logging to %s/env/%s", self.address, self._env)
        return self._vis

    def _give_up(self, error: Exception) -> None:
        """Stop using visdom for the rest of the run with one warning (raise if not offline_ok)."""
        self._vis = None
        if not self._offline_ok:
            raise ConnectionError(f"visdom server at {self.address} unreachable: {error}")
        self._unavailable = True
        warnings.warn(
            f"visdom server at {self.address} unreachable ({error}); carrying on without "
            "visdom. Start one with `make visdom` or set the visdom logger's server/port.",
            stacklevel=1,  # ours: the callers are Lightning's files
        )

    def _draw(self, method: str, **kwargs: Any) -> None:
        """Call ``Visdom.<method>(**kwargs)`` if connected; a lost server disables the logger."""
        vis = self.experiment
        if vis is None:
            return
        try:
            getattr(vis, method)(**kwargs)
        except ConnectionError as error:
            self._give_up(error)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Append one point per metric to its line plot (x = ``step``, else 0)."""
        x = 0 if step is None else step
        for key, value in metrics.items():
            self._draw(
                "line",
                env=self._env,
                Y=np.array([float(value)]),
                X=np.array([x]),
                win=key,
                update="append" if key in self._plotted else None,
                opts={"title": key, "xlabel": "step"},
            )
            self._plotted.add(key)

    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        """Show the flattened hyperparameters as ``key: value`` lines in window ``hparams``."""
        flat = _flatten_dict(_convert_params(params))
        lines = "\n".join(f"{key}: {value}" for key, value in flat.items())
        self._draw(
            "text",
            env=self._env,
            text=f"<pre>{html.escape(lines)}</pre>",
            win=_HPARAMS_WIN,
            opts={"title": "hyperparameters"},
        )

    @rank_zero_only
    def log_image(
        self,
        tag: str,
        image: torch.Tensor | np.ndarray,
        step: int | None = None,
        caption: str | None = None,
    ) -> None:
        """Show ``image`` (HW, CHW or HWC; uint8, or float in [0, 1]) in window ``tag``."""
        parts = [part for part in (caption, None if step is None else f"step {step}") if part]
        opts: dict[str, Any] = {"title": tag}
        if parts:
            opts["caption"] = " — ".join(parts)
        self._draw("image", env=self._env, img=_as_chw_uint8(image), win=tag, opts=opts)

    @rank_zero_only
    def log_figure(self, tag: str, figure: Figure, step: int | None = None) -> None:
        """Show a matplotlib figure, rendered to PNG pixels, in window ``tag``."""
        if self.experiment is None:
            return  # no server: spare the rendering
        self.log_image(tag, _figure_to_array(figure), step=step)

    @rank_zero_only
    def log_bar(
        self, tag: str, values: Sequence[float] | np.ndarray, labels: Sequence[str]
    ) -> None:
        """Draw one bar per label (e.g. class-wise AP) in window ``tag``."""
        heights = np.asarray(values, dtype=np.float64).reshape(-1)
        if len(heights) != len(labels):
            raise ValueError(f"log_bar({tag!r}): {len(heights)} values but {len(labels)} labels")
        if len(heights) < 2:
            # visdom 0.2.4 squeezes X to 0-d and asserts; nothing else can draw a bar offline.
            warnings.warn(
                f"log_bar({tag!r}): visdom cannot draw a single bar; skipped", stacklevel=2
            )
            return
        opts = {"title": tag, "rownames": list(labels)}
        self._draw("bar", env=self._env, X=heights, win=tag, opts=opts)

    def save(self) -> None:
        """Nothing: Lightning calls this after every ``log_metrics``, and the server already
        holds every window; the env is written to disk once, by :meth:`finalize`."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Ask the server to write the env to its ``-env_path`` (only once connected)."""
        if self._vis is not None:
            self._draw("save", envs=[self._env])
