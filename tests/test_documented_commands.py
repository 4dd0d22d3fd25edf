"""Every ``python -m wsl.<train|evaluate|predict|inspect> ...`` command in README.md and
docs/*.md composes with the real configs.

The commands are read from fenced code blocks (backslash continuations joined) and from inline
code spans, then composed with Hydra's compose API and the entry point's primary config
(conf/train.yaml, evaluate.yaml, predict.yaml, inspect.yaml), so an override of a key or a group
choice that does not exist fails here, naming the file, the line and the command. What the shell
would do first is done here too: ``$VAR`` / ``${VAR}`` / ``$(...)`` become a value, quotes are
removed, and the command ends at ``|``, ``&&``, ``;``, a redirection or a comment. Placeholders
such as ``<ckpt>`` or ``<time>`` become a plain word. Hydra's own flags (``--cfg job``,
``--info defaults``, ``-m``, ...) are dropped; with ``-m`` each sweep (``a=1,2``) composes with
its first value. One compose per command, no training.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# The entry points whose arguments are Hydra overrides, and their primary configs.
PRIMARY_CONFIG = {
    "train": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "inspect": "inspect",
}
COMMAND = re.compile(r"python -m wsl\.(train|evaluate|predict|inspect)(?![\w.])")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
SHELL_VARIABLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
COMMAND_SUBSTITUTION = re.compile(r"\$\([^()]*\)")
PLACEHOLDER = re.compile(r"<[A-Za-z][\w .-]*>")  # <ckpt>, <time>, <run dir>
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1", "&>", "<"}

# Hydra's command-line flags: those that take a value, and the values --info may take.
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p"}
FLAGS = {"-m", "--multirun", "--resolve", "--help", "-h", "--hydra-help", "--shell-completion"}
INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


@dataclass(frozen=True)
class Command:
    """One documented command: where it is, which entry point, its Hydra arguments."""

    path: Path
    line: int
    entry_point: str
    text: str  # as written (continuations joined)
    arguments: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.text}"


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of every shell line in fenced code blocks (continuations
    joined) and of every inline code span outside them."""
    found: list[tuple[int, str]] = []
    in_fence, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            in_fence, pending = not in_fence, ""
            continue
        if in_fence:
            if not pending:
                start = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            found.append((start, pending + line))
            pending = ""
        else:
            found.extend((number, span.group(2)) for span in INLINE_CODE.finditer(line))
    return found


def _shell_words(text: str) -> list[str]:
    """The words the shell would pass, up to the first operator or comment."""
    text = COMMAND_SUBSTITUTION.sub("SUBSTITUTED", text)
    text = SHELL_VARIABLE.sub("0", text)
    text = PLACEHOLDER.sub("PLACEHOLDER", text)
    words = []
    for word in shlex.split(text, comments=True):
        if word in SHELL_OPERATORS or word.endswith(";"):
            break
        words.append(word)
    return words


def documented_commands(path: Path) -> list[Command]:
    """Every ``python -m wsl.<entry point>`` command in the Markdown file ``path``."""
    commands = []
    for number, line in _logical_lines(path.read_text(encoding="utf-8")):
        for match in COMMAND.finditer(line):
            rest = COMMAND.split(line[match.end() :], maxsplit=1)[0]  # up to a next command
            text = " ".join(line.split())
            commands.append(Command(path, number, match.group(1), text, tuple(_shell_words(rest))))
    return commands


def hydra_overrides(command: Command) -> tuple[list[str], bool]:
    """The overrides of ``command`` without Hydra's flags, and whether it is a multirun."""
    overrides, multirun, words = [], False, list(command.arguments)
    while words:
        word = words.pop(0)
        flag, _, value = word.partition("=")
        if word in ("-m", "--multirun"):
            multirun = True
        elif word in FLAGS:
            pass
        elif flag in FLAGS_WITH_VALUE:
            if not value:
                assert words, f"{command}: {flag} needs a value"
                words.pop(0)
        elif flag == "--info":
            if not value and words and words[0] in INFO_VALUES:
                words.pop(0)
        elif word.startswith("-"):
            pytest.fail(f"{command}: {word} is not a flag of a Hydra app")
        else:
            overrides.append(word)
    return overrides, multirun


def first_of_each_sweep(overrides: list[str]) -> list[str]:
    """``overrides`` with each sweep (``a=1,2``, ``g=x,y``) replaced by its first value."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [
        f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
        if o.is_sweep_override()
        else o.input_line
        for o in parsed
    ]


COMMANDS = [command for path in DOCUMENTS for command in documented_commands(path)]


def test_the_documents_hold_commands() -> None:
    """The extraction finds the README's commands of each entry point (it is not vacuous)."""
    readme = {c.entry_point for c in COMMANDS if c.path.name == "README.md"}
    assert readme == set(PRIMARY_CONFIG), readme
    assert len(COMMANDS) >= 30, len(COMMANDS)


def test_shell_words_are_read_as_the_shell_passes_them() -> None:
    words = _shell_words(
        "experiment=wsddn hydra.run.dir=outputs/slurm-${SLURM_JOB_ID} "
        "ckpt_path=$RUN/<time>/last.ckpt input=<run dir>/x 'a=b c' # a comment"
    )
    assert words == [
        "experiment=wsddn",
        "hydra.run.dir=outputs/slurm-0",
        "ckpt_path=0/PLACEHOLDER/last.ckpt",
        "input=PLACEHOLDER/x",
        "a=b c",
    ]
    assert _shell_words("index=3 && python -m other") == ["index=3"]
    sweep = ["model.optimizer.lr=1e-2,1e-3", "data/proposals=mat,edgeboxes", "trainer=gpu"]
    assert first_of_each_sweep(sweep) == [
        "model.optimizer.lr=0.01",
        "data/proposals=mat",
        "trainer=gpu",
    ]


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_documented_command_composes(command: Command) -> None:
    overrides, multirun = hydra_overrides(command)
    if multirun:
        overrides = first_of_each_sweep(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            compose(
                PRIMARY_CONFIG[command.entry_point], overrides=overrides, return_hydra_config=True
            )
    except Exception as error:  # any failure is the command's, named below
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        pytest.fail(f"{command}\n  does not compose: {type(error).__name__}: {first}")
