"""Options that take several values after one flag (``--level 80 95``).

Click (under typer) gives an option one value per flag, so a list option is written ``--level 80
--level 95``. :func:`spread_values` rewrites the command line before it is parsed: the numbers that follow
one of :data:`MULTI_VALUE_OPTIONS` become one flag each. It stops at the first word that is not a number
(the next option, or the training file), so ``--level 80 95 train.csv`` still reads ``train.csv`` as the
file.
"""

from __future__ import annotations

__all__ = ["MULTI_VALUE_OPTIONS", "spread_values"]

MULTI_VALUE_OPTIONS = ("--level", "--quantiles")


def _number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def spread_values(args: list[str], options: tuple[str, ...] = MULTI_VALUE_OPTIONS) -> list[str]:
    """``[..., "--level", "80", "95", ...]`` -> ``[..., "--level", "80", "--level", "95", ...]``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        out.append(word)
        i += 1
        if word == "--":
            return out + args[i:]
        if word in options and i < len(args):
            out.append(args[i])  # the flag's own value, whatever it is (click reports a bad one)
            i += 1
            while i < len(args) and _number(args[i]):
                out += [word, args[i]]
                i += 1
    return out
