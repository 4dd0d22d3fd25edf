"""``python -m wsl.<evaluate|predict|inspect> --help`` offers only what the command takes.

These commands rebuild the model (and for evaluate the data) from the checkpoint, or use no
model at all (inspect), so wsl.train's groups (experiment, model, trainer, callbacks, ...) are
neither listed in their help nor accepted, even appended with ``+group=option``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.support import CONF_DIR
from tests.support import command as run_command
from wsl import evaluate, inspect, predict
from wsl.runtime.settings import SettingError, check_groups

TRAIN_ONLY = ("experiment", "model", "trainer", "callbacks", "hparams_search", "debug")

# command -> (its CONFIG_GROUPS, groups --help lists -> options, keys its config section shows)
COMMANDS = {
    "predict": (
        predict.CONFIG_GROUPS,
        {"paths": None},
        ("ckpt_path", "input", "score_threshold", "max_boxes", "proposals", "proposal_filter"),
    ),
    "evaluate": (
        evaluate.CONFIG_GROUPS,
        {"logger": None, "paths": None},
        ("ckpt_path", "data", "split", "trainer", "logger"),
    ),
    "inspect": (
        inspect.CONFIG_GROUPS,
        {
            "data": ["voc_proposals", "coco", "image_tags"],
            "data/layout": None,
            "data/proposals": None,
            "logger": None,
            "paths": None,
        },
        ("split", "index", "top_proposals", "data"),
    ),
}


def _help(name: str) -> str:
    result = run_command(f"wsl.{name}", "--help")
    assert result.returncode == 0, result.stderr
    return result.stdout


def _section(text: str, title: str) -> str:
    """The lines after ``== title ==`` up to the next ``== ... ==`` heading."""
    start = text.index(f"== {title} ==\n") + len(f"== {title} ==\n")
    end = text.find("\n== ", start)
    return text[start : end if end >= 0 else len(text)]


def _options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_only_the_groups_the_command_takes(command: str) -> None:
    _, groups, keys = COMMANDS[command]
    text = _help(command)
    assert text.startswith("wsl: weakly supervised object localization")  # the shared header
    listed = dict(
        re.findall(r"^([\w/]+): (.+)$", _section(text, "Configuration groups"), re.MULTILINE)
    )
    for group in TRAIN_ONLY:
        assert group not in listed, f"{command} --help offers {group}, which it refuses"
    assert sorted(listed) == sorted(groups)
    for group, options in groups.items():  # the hand-written lists follow conf/
        assert listed[group].split(", ") == (options or _options(group)), group
    config = _section(text, "Config")
    for key in keys:
        assert re.search(rf"^\s*{key}:", config, re.MULTILINE), f"{key} not in {command} --help"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_config_groups_are_the_primary_configs(command: str) -> None:
    taken, groups, _ = COMMANDS[command]
    defaults = yaml.safe_load((CONF_DIR / f"{command}.yaml").read_text())["defaults"]
    named = {next(iter(entry)) for entry in defaults if isinstance(entry, dict)} - {"hydra"}
    assert sorted(taken) == sorted(named)
    assert {group.split("/")[0] for group in groups} == set(taken)


def test_train_help_still_lists_every_group() -> None:
    text = _help("train")
    listed = _section(text, "Configuration groups")
    for group in TRAIN_ONLY:
        assert re.search(rf"^{group}: ", listed, re.MULTILINE), group


def test_an_appended_group_is_refused() -> None:
    choices = {"paths": "default", "hydra": "default", "hydra/launcher": "basic"}
    check_groups("wsl.predict", choices, ("paths",), "why")  # Hydra's own are always taken
    with pytest.raises(SettingError) as error:
        check_groups("wsl.predict", {**choices, "model": "wsddn"}, ("paths",), "from the ckpt")
    assert str(error.value) == (
        "wsl.predict takes no model=wsddn: from the ckpt; its config groups are paths "
        "(python -m wsl.predict --help)"
    )


def test_evaluate_refuses_plus_model_in_one_line(tmp_path: Path) -> None:
    result = run_command(
        "wsl.evaluate", "ckpt_path=missing.ckpt", "+model=wsddn", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "wsl.evaluate takes no model=wsddn: the data and the model are rebuilt" in output
    assert "Traceback" not in output
