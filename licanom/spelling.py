"""A misspelt name's hint: the known name it lies closest to, said alike wherever a name is refused."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


def did_you_mean(names: Sequence[str], known: Iterable[str]) -> str:
    """`` (did you mean 'threshold'?)``: the one of ``known`` each of ``names`` lies closest to
    (:func:`difflib.get_close_matches` at its cutoff of 0.6), where several are refused with the
    name it is for (`` (did you mean 'bins' for 'binz', 'index' for 'indx'?)``); empty where none
    is close. A hint after a refusal, never a correction: a guessed key is not read in its place."""
    known = [str(k) for k in known]
    close = {str(n): m[0] for n in names if (m := difflib.get_close_matches(str(n), known, n=1))}
    if not close:
        return ""
    if len(names) == 1:
        return f" (did you mean {next(iter(close.values()))!r}?)"
    return f" (did you mean {', '.join(f'{c!r} for {n!r}' for n, c in close.items())}?)"
