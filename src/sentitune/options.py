"""The Python API takes the CLI's option names: `sentitune.train(..., quiet=True)` as
`sentitune train --quiet`, `sentitune.evaluate(..., slice=[...])` as `--slice`.

Inside, the functions keep the names that read best in Python (`progress=`, `slices=`); the
public verbs (`sentitune.train`, ...) accept either spelling, never both at once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

# CLI name -> (the function's own parameter, how a CLI value becomes its value)
CLI_NAMES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "quiet": ("progress", lambda quiet: not quiet),
    "slice": ("slices", lambda slices: slices),
}


def accepting_cli_names(function: Callable) -> Callable:
    """`function`, also taking the CLI's name of each of its parameters that has one."""
    signature = inspect.signature(function)
    params = signature.parameters
    aliases = {cli: own for cli, own in CLI_NAMES.items() if own[0] in params}
    if not aliases:
        return function

    @functools.wraps(function)
    def call(*args, **kwargs):
        for cli, (name, convert) in aliases.items():
            if cli in kwargs:
                if name in kwargs:
                    raise TypeError(f"{function.__name__}() takes {cli}= or {name}=, not both")
                kwargs[name] = convert(kwargs.pop(cli))
        return function(*args, **kwargs)

    listed = list(params.values())
    keyword_at = next((i for i, p in enumerate(listed) if p.kind == p.VAR_KEYWORD), len(listed))
    added = [inspect.Parameter(cli, inspect.Parameter.KEYWORD_ONLY, default=None)
             for cli in aliases]
    call.__signature__ = signature.replace(
        parameters=listed[:keyword_at] + added + listed[keyword_at:])
    return call
