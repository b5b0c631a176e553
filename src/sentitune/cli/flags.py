"""The flags every verb shares, and the flags generated from the config dataclasses.

A setting's flag, type, choices and help come from its dataclass field (same names, same
help), so the CLI, YAML presets and the saved config.yaml can never drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from sentitune import console
from sentitune.config import SECTIONS, AuditConfig, DistillConfig, InferenceConfig, TuneConfig
from sentitune.server.settings import ServeSettings

CLEARS = ("none", "all", "off")  # spellings of "no value" for an optional setting
# Older spellings, still accepted but not listed: flag -> the flag it now is.
ALIASES = {"--dataset": "--data"}
SPLITS = ("train", "validation", "test")


def boolean_words(argv: list[str], flags: set[str]) -> list[str]:
    """The older `--flag true|false` as `--flag` / `--no-flag`."""
    out: list[str] = []
    words = {"true": True, "yes": True, "1": True, "on": True,
             "false": False, "no": False, "0": False, "off": False}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in flags and eq and value.lower() in words:
            out.append(name if words[value.lower()] else "--no-" + name[2:])
        elif arg in flags and i + 1 < len(argv) and argv[i + 1].lower() in words:
            out.append(arg if words[argv[i + 1].lower()] else "--no-" + arg[2:])
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


def converter(kind: str, optional: bool):
    base = int if "int" in kind else float if "float" in kind else str

    def convert(text: str):
        if optional and text.lower() in CLEARS:
            return None
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if base is int else 'a number'}"
                f"{' or none' if optional else ''}, got '{text}'") from None

    convert.__name__ = base.__name__  # argparse names the type in its messages
    return convert


def add_config_flags(parser: argparse.ArgumentParser, sections: Sequence[str] = tuple(SECTIONS),
                      skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> None:
    """One flag per setting (`only` those, none of `skip`); absent flags stay out of the
    namespace (default SUPPRESS), so only what was typed overrides the preset or the
    dataclass's default. A field without help text is no flag (a nested section)."""
    for section in sections:
        group = parser.add_argument_group(f"{section} settings")
        for f in dataclasses.fields(SECTIONS.get(section) or FLAG_ONLY_SECTIONS[section]):
            if f.name in skip or (only is not None and f.name not in only) \
                    or "help" not in f.metadata:
                continue
            add_setting_flag(group, f)


def add_setting_flag(group, f: dataclasses.Field) -> None:
    option = f.metadata.get("flag") or console.flag(f.name)
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    text, choices = f.metadata["help"], f.metadata.get("choices")
    optional = "None" in kind  # "none" clears it
    shown = "" if f.default in (None, dataclasses.MISSING) else f" (default: {f.default})"
    common = {"dest": f.name, "default": argparse.SUPPRESS}
    if "bool" in kind:
        group.add_argument(option, action=argparse.BooleanOptionalAction, help=text + shown,
                           **common)
    elif kind.startswith("tuple"):  # several values: `--report-to mlflow tensorboard`
        shown_choices = ("{" + ",".join(("none", *choices)) + "}" if choices
                         else f.name.split("_")[-1].upper())
        group.add_argument(option, nargs="+", metavar=shown_choices,
                           help=text + " (default: none)", **common)
    elif choices:
        values = [*choices, *(("none",) if optional else ())]
        group.add_argument(option, type=converter("str", optional), choices=(
            *choices, *((None,) if optional else ())), metavar="{" + ",".join(values) + "}",
            help=text + shown, **common)
    else:
        group.add_argument(option, type=converter(kind, optional), help=text + shown,
                           metavar=f.name.split("_")[-1].upper() + ("|none" if optional
                                                                     else ""), **common)


# Typed settings of one verb that are not part of a run, given as flags the same way.
FLAG_ONLY_SECTIONS = {"tune": TuneConfig, "distill": DistillConfig, "inference": InferenceConfig,
                      "serve": ServeSettings, "audit": AuditConfig}


def given(args: argparse.Namespace, section: type) -> dict[str, Any]:
    """The settings of `section` (a config dataclass) typed on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(section)
            if hasattr(args, f.name)}


def typed_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The config settings typed on the command line."""
    names = {f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def flag(parser, *names: str, **kwargs) -> None:
    """An option with help; a default, when it means something, is shown once."""
    default = kwargs.get("default")
    if default not in (None, False, argparse.SUPPRESS) and "(default" not in kwargs["help"]:
        kwargs["help"] += f" (default: {default})"
    parser.add_argument(*names, **kwargs)


def run_writing_flags(parser) -> None:
    """What every verb that trains a run directory takes: --resume and --overwrite."""
    flag(parser, "--resume", action=argparse.BooleanOptionalAction, default=False,
          help="continue an interrupted run from its last checkpoint")
    flag(parser, "--overwrite", action=argparse.BooleanOptionalAction, default=False,
          help="replace an existing run directory")


def quiet_flag(parser) -> None:
    flag(parser, "--quiet", action=argparse.BooleanOptionalAction, default=False,
          help="no progress output")


def run_dirs_argument(parser, what: str) -> None:
    parser.add_argument("run_dir", nargs="+", metavar="RUN_DIR",
                        help=f"a run directory made by `sentitune train`; several with the "
                             f"same labels are {what} as one ensemble (mean probabilities)")


def boolean_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions if isinstance(action,
            argparse.BooleanOptionalAction) for option in action.option_strings
            if not option.startswith("--no-")}


def alias(arg: str) -> str:
    """An older flag spelling (`--dataset x`, `--dataset=x`) as today's."""
    name, eq, value = arg.partition("=")
    return ALIASES.get(name, name) + eq + value
