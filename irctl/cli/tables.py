"""Tables that fit the terminal: drop the least important columns rather than let rich
squeeze every column into an ellipsis (it does so below the sum of the widths)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def fit_columns(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, str]],
    width: int,
    drop_order: Sequence[str],
    flexible: Mapping[str, int] | None = None,
) -> list[str]:
    """`columns` less the first of `drop_order` until they fit `width`.

    Cells are rich markup; a `flexible` column (one that wraps) counts as its minimum width.
    """
    from rich.text import Text

    flexible = flexible or {}

    def need(name: str) -> int:
        if name in flexible:
            wide = flexible[name]
        else:
            wide = max([len(name), *(Text.from_markup(r.get(name, "-")).cell_len for r in rows)])
        return wide + 3  # padding either side and the rule between columns

    chosen = list(columns)
    for name in drop_order:
        if sum(need(c) for c in chosen) + 1 <= width:
            break
        if name in chosen:
            chosen.remove(name)
    return chosen
