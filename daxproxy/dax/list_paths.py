"""Projections with list indexes over DAX: what to ask DynamoDB, and DynamoDB's checks.

DAX's projected reply keys each value by its path's position in the projection, and the
client rebuilds the item from the positions. DynamoDB's own answer to ``l[1], l[3]`` packs
the selected elements together (``[b, d]``), so which element is which is not certain from
it. :func:`fetched` gives the paths to ask DynamoDB for instead: each path cut before its
first list index (``a.l`` for ``a.l[3].x``), deduplicated, none a prefix of another (which
DynamoDB would refuse as overlapping); the caller then walks each original path through the
whole lists (:func:`calls.projected <daxproxy.dax.calls.projected>`), so every value is
known by its position. A wider projection costs no capacity: DynamoDB charges by item size.

The client's own paths are checked first as DynamoDB checks a projection, since the wider
one may pass where they would not: a text too long (the proxy's rendering of the paths, as
it sends a projection without list indexes), overlapping or conflicting paths, a path too
deep, a ``.`` or ``[]`` step into a key attribute of the table (:func:`check`) or of one of
its indexes (:func:`check_index_keys`, for the caller who knows them); :class:`Refused`
carries DynamoDB's message.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from daxproxy.dax.expressions import Path

MAX_DEPTH = 32  # Developer Guide: "The maximum depth for a document path is 32"
MAX_EXPRESSION_BYTES = 4096  # "4 KB"; DynamoDB takes 4096 bytes and refuses 4097


class Refused(Exception):
    """DynamoDB would refuse the projection: a ValidationException with this message."""


def has_index(paths: Sequence[Path]) -> bool:
    return any(isinstance(step, int) for path in paths for step in path)


def fetched(paths: Sequence[Path], keys: Collection[str], size: int) -> list[Path]:
    """The paths to ask DynamoDB for in place of ``paths`` (``keys``: the table's key
    attribute names; ``size``: the bytes of their text as the proxy renders it). Raises
    Refused where DynamoDB would refuse ``paths`` themselves."""
    if size > MAX_EXPRESSION_BYTES:
        raise Refused(
            "Invalid ProjectionExpression: Expression size has exceeded the maximum allowed "
            f"size; expression size: {size}"
        )
    check(paths, keys)
    prefixes = []
    for path in paths:
        cut = next((i for i, step in enumerate(path) if isinstance(step, int)), len(path))
        prefixes.append(path[:cut])
    # Checked paths neither overlap nor conflict, so no cut path is a strict prefix of
    # another (``a.l[0]`` beside ``a.l.x`` conflicts; beside ``a.l``, overlaps): equal
    # ones are all there is to merge.
    return list(dict.fromkeys(prefixes))


def check(paths: Sequence[Path], keys: Collection[str]) -> None:
    """DynamoDB's checks of a projection's paths, its words in the message (as dynalite,
    which copies them, has them: the first overlap is reported before any conflict). In
    time linear in the steps, as a projection may hold hundreds of paths."""
    ended: dict[Path, int] = {}  # an earlier path -> its position
    through: dict[Path, int] = {}  # a prefix of an earlier path (itself too) -> the first's
    turns: dict[tuple[Path, bool], int] = {}  # (prefix, next step an index) -> the first's
    conflict = None
    for i, path in enumerate(paths):
        if len(path) > MAX_DEPTH:
            raise Refused(
                "Invalid ProjectionExpression: The document path has too many nesting levels; "
                f"nesting levels: {len(path)}"
            )
        prefixes = [path[:k] for k in range(1, len(path) + 1)]
        overlaps = [ended[prefix] for prefix in prefixes if prefix in ended]
        if path in through:
            overlaps.append(through[path])
        if overlaps:
            raise Refused(_pair_message("overlap", paths[min(overlaps)], path))
        if conflict is None:
            other = ((path[:k], not isinstance(path[k], int)) for k in range(1, len(path)))
            conflicts = [turns[turn] for turn in other if turn in turns]
            if conflicts:
                conflict = _pair_message("conflict", paths[min(conflicts)], path)
        for k, prefix in enumerate(prefixes):
            through.setdefault(prefix, i)
            if k + 1 < len(path):
                turns.setdefault((prefix, isinstance(path[k + 1], int)), i)
        ended[path] = i
    if conflict is not None:
        raise Refused(conflict)
    for path in paths:
        if len(path) > 1 and path[0] in keys:
            raise Refused(
                "Key attributes must be scalars; list random access '[]' and map lookup '.' "
                f"are not allowed: Key: {path[0]}"
            )


def check_index_keys(paths: Sequence[Path], index_keys: Collection[str]) -> None:
    """DynamoDB's refusal of a step into a key attribute of one of the table's indexes."""
    for path in paths:
        if len(path) > 1 and path[0] in index_keys:
            raise Refused(
                "Key attributes must be scalars; list random access '[]' and map lookup '.' "
                f"are not allowed: IndexKey: {path[0]}"
            )


def _pair_message(kind: str, one: Path, two: Path) -> str:
    return (
        f"Invalid ProjectionExpression: Two document paths {kind} with each other; must "
        f"remove or rewrite one of these paths; path one: {_shown(one)}, path two: {_shown(two)}"
    )


def _shown(path: Path) -> str:
    return "[" + ", ".join(f"[{s}]" if isinstance(s, int) else s for s in path) + "]"
