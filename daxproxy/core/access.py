"""Who may call the proxy, and for what: the ``auth_file`` and the check of each request.

The auth file is TOML, one ``[[keys]]`` table per access key::

    [[keys]]
    access_key_id = "AKIAORDERSAPP0000001"
    secret_access_key_env = "ORDERS_APP_SECRET"   # or secret_access_key = "..."
    tables = ["Orders", "Orders-*"]                # globs with *; "*": every table
    operations = ["read", "write", "describe"]    # groups, operation names, or "*"

:func:`parse_grants` reads its text once, at start-up, and raises :class:`SettingError`
naming ``auth_file`` and the problem (bad TOML, an unknown field or operation, a secret's
missing environment variable, a repeated key id); no message ever carries a secret. The
file and the environment are read at the edge (:mod:`daxproxy.edge.auth`), which hands
the text and the variables here; :func:`from_settings` builds the check from the grants.

:class:`Access` checks one request: its SigV4 signature
(:func:`daxproxy.core.sigv4_verify.verify`), then every (action, table) pair it needs
(:func:`needs`) against its key's grant, raising DynamoDB's error on the first failure.
An action is the operation's name, except for PartiQL, where it is IAM's per statement:
``PartiQLSelect``, ``PartiQLInsert``, ``PartiQLUpdate`` or ``PartiQLDelete``. The tables
are every table the request names (TableName, RequestItems, TransactItems, the table of an
ARN (:mod:`daxproxy.core.tables`), the tables of PartiQL statements, read from the one
member the operation runs); a request that names none is allowed when its operation is one
that takes no table (ListTables, ...), and a request the proxy cannot read fully (an
unknown operation, whatever tables it names elsewhere; a statement it cannot parse, which
could write anywhere) only to a key that may use every table and every action it could be.

DAX's protocol signs connections, not requests: :meth:`Access.authorize_connection`
verifies a connection's authorizeConnection (:func:`daxproxy.core.sigv4_dax.verify`), and
each of its calls is then checked with :meth:`Access.authorize` alone;
:meth:`Access.authorize_any` is the check before a DAX call looks its table up. Pure: no
I/O.
"""

from __future__ import annotations

import enum
import re
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from daxproxy.core import partiql, sigv4_dax, sigv4_verify
from daxproxy.core.config import SettingError, Settings
from daxproxy.core.errors import AccessDeniedException
from daxproxy.core.operations import Kind, Operation, known
from daxproxy.core.tables import table_of_arn

SETTING = "auth_file"

PARTIQL_SELECT = "PartiQLSelect"
PARTIQL_INSERT = "PartiQLInsert"
PARTIQL_UPDATE = "PartiQLUpdate"
PARTIQL_DELETE = "PartiQLDelete"
PARTIQL_ACTIONS = (PARTIQL_SELECT, PARTIQL_INSERT, PARTIQL_UPDATE, PARTIQL_DELETE)

# The groups an auth file may name in ``operations``.
GROUPS: dict[str, frozenset[str]] = {
    "read": frozenset(
        {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", PARTIQL_SELECT}
    ),
    "write": frozenset(
        {
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "BatchWriteItem",
            "TransactWriteItems",
            PARTIQL_INSERT,
            PARTIQL_UPDATE,
            PARTIQL_DELETE,
        }
    ),
}
ALL = "*"

# Operations that may name no table at all; any other that names none needs every table.
_TABLELESS = frozenset(
    {
        "ListTables",
        "DescribeLimits",
        "DescribeEndpoints",
        "ListGlobalTables",
        "ListBackups",
        "ListExports",
        "ListImports",
        "ListContributorInsights",
        "ListStreams",
    }
)
# Request fields that name a table, and fields that carry an ARN of (something of) a table.
_NAME_FIELDS = ("TableName", "TargetTableName", "SourceTableName", "GlobalTableName")
_ARN_FIELDS = (
    "TableArn",
    "SourceTableArn",
    "ResourceArn",
    "BackupArn",
    "ExportArn",
    "ImportArn",
    "StreamArn",
)
_KEY_ID = re.compile(r"[A-Za-z0-9_+=.@-]{1,128}\Z")
_FIELDS = frozenset(
    {"access_key_id", "secret_access_key", "secret_access_key_env", "tables", "operations"}
)


class Unknown(enum.Enum):
    """A table the proxy cannot name from the request: only ``tables = ["*"]`` covers it."""

    TABLE = "an unknown table"


Table = str | None | Unknown  # None: the request names no table (ListTables)
Need = tuple[str, Table]  # (action, table)


@dataclass(frozen=True, slots=True)
class Grant:
    """One access key: its secret, and what it may do."""

    key_id: str
    secret: str = field(repr=False)
    tables: tuple[str, ...]
    actions: frozenset[str]  # expanded from the groups; may contain "*"
    _patterns: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    def may(self, action: str, table: Table) -> bool:
        if ALL not in self.actions and action not in self.actions:
            return False
        if table is None:
            return True
        if ALL in self.tables:
            return True
        if isinstance(table, Unknown):
            return False
        return any(pattern.match(table) for pattern in self._patterns)


def grant(key_id: str, secret: str, tables: Iterable[str], operations: Iterable[str]) -> Grant:
    """A grant; ``operations`` may name groups, which are expanded."""
    names = tuple(tables)
    actions: set[str] = set()
    for name in operations:
        actions |= _expand(name)
    patterns = tuple(
        re.compile(".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z")
        for pattern in names
    )
    return Grant(key_id, secret, names, frozenset(actions), patterns)


def _expand(name: str) -> set[str]:
    if name == ALL:
        return {ALL}
    if name in GROUPS:
        return set(GROUPS[name])
    if name == "describe":
        return {op.name for op in known(Kind.CONTROL) if op.read_only}
    if name == "manage":
        changes = known(Kind.CONTROL) + known(Kind.TABLE_CHANGE)
        return {op.name for op in changes if not op.read_only}
    if name == "streams":
        return {op.name for op in known(Kind.STREAMS)}
    if name in PARTIQL_ACTIONS or _known_operation(name):
        return {name}
    raise ValueError(name)


GROUP_NAMES = ("read", "write", "describe", "manage", "streams", ALL)


def _known_operation(name: str) -> bool:
    """A name of the operation table's, but for PartiQL's (granted per statement)."""
    return any(op.name == name for kind in Kind if kind is not Kind.PARTIQL for op in known(kind))


# --- What a request needs ------------------------------------------------------------


def needs(operation: Operation, payload: Mapping[str, Any]) -> list[Need]:
    """Every (action, table) pair the request needs a grant for."""
    if operation.kind is Kind.PARTIQL:
        return statement_needs(operation.name, payload)
    name = operation.name
    if operation.kind is Kind.UNKNOWN:
        # Which members name its tables (or what it does to them) is not known: a
        # TableName beside them proves nothing.
        return [(name, Unknown.TABLE)]
    named = tables_of(payload)
    if named is None:
        return [(name, Unknown.TABLE)]
    if not named:
        return [(name, None if name in _TABLELESS else Unknown.TABLE)]
    return [(name, table) for table in sorted(named)]


def tables_of(payload: Mapping[str, Any]) -> set[str] | None:
    """The tables a (non-PartiQL) request names; None when a field that names one is not
    what it should be."""
    tables: set[str] = set()
    for value, parse in _table_fields(payload):
        table = parse(value)
        if table is None:
            return None
        tables.add(table)
    return tables


def _table_fields(
    payload: Mapping[str, Any],
) -> Iterator[tuple[object, Callable[[object], str | None]]]:
    """Each value that names a table, with how to read the table from it."""
    for name in _NAME_FIELDS:
        if name in payload:
            yield payload[name], _table_name
    for name in _ARN_FIELDS:
        if name in payload:
            yield payload[name], _table_of_arn
    if "ShardIterator" in payload:
        yield payload["ShardIterator"], _table_of_iterator
    if "RequestItems" in payload:
        items = payload["RequestItems"]
        for key in items if isinstance(items, dict) else [None]:
            yield key, _table_name
    if "TransactItems" in payload:
        entries = payload["TransactItems"]
        for entry in entries if isinstance(entries, list) else [None]:
            for action in entry.values() if isinstance(entry, dict) and entry else [None]:
                yield (action.get("TableName") if isinstance(action, dict) else None), _table_name
    if "TableCreationParameters" in payload:  # ImportTable
        creation = payload["TableCreationParameters"]
        yield (creation.get("TableName") if isinstance(creation, dict) else None), _table_name


def _table_name(value: object) -> str | None:
    """A TableName: a name, or (as DynamoDB accepts) the table's ARN."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("arn:"):
        return _table_of_arn(value)
    return value


def _table_of_arn(value: object) -> str | None:
    return table_of_arn(value) if isinstance(value, str) else None


def _table_of_iterator(value: object) -> str | None:
    """DynamoDB's shard iterators begin with the stream's ARN, then "|"."""
    return _table_of_arn(value.partition("|")[0]) if isinstance(value, str) else None


_STATEMENT_ACTIONS = {
    partiql.SELECT: PARTIQL_SELECT,
    partiql.INSERT: PARTIQL_INSERT,
    partiql.UPDATE: PARTIQL_UPDATE,
    partiql.DELETE: PARTIQL_DELETE,
}


def statement_needs(operation: str, payload: Mapping[str, Any]) -> list[Need]:
    """ExecuteStatement, BatchExecuteStatement, ExecuteTransaction: each statement's action
    on its tables (:mod:`daxproxy.core.partiql`), read from the member ``operation`` runs,
    as the cache reads them. A statement the proxy cannot read could be a write to any
    table: it needs every PartiQL action on every table."""
    everything: list[Need] = [(action, Unknown.TABLE) for action in PARTIQL_ACTIONS]
    statements = partiql.statements(operation, payload)
    if not statements:
        return everything
    out: list[Need] = []
    for statement in statements:
        if statement.verb is None or statement.tables is None:
            return everything
        action = _STATEMENT_ACTIONS[statement.verb]
        out.extend((action, table) for table in statement.tables)
    return out


# --- The check -----------------------------------------------------------------------


class Access:
    """Checks each request's signature and its key's grant; see the module docstring."""

    def __init__(
        self,
        grants: Mapping[str, Grant],
        *,
        region: str,
        skew_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._grants = dict(grants)
        self.region = region
        self._skew = skew_seconds
        self._clock = clock

    def __len__(self) -> int:
        return len(self._grants)

    def _secret_of(self, key_id: str) -> str | None:
        found = self._grants.get(key_id)
        return None if found is None else found.secret

    def admit(
        self,
        *,
        raw_path: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        operation: Operation,
        payload: Mapping[str, Any],
    ) -> str:
        """The key id of a request that may go on; else DynamoDB's error, raised."""
        key_id = sigv4_verify.verify(
            method="POST",
            raw_path=raw_path,
            headers=headers,
            body=body,
            region=self.region,
            secret_of=self._secret_of,
            now=self._clock(),
            skew_seconds=self._skew,
        )
        self.authorize(key_id, operation, payload)
        return key_id

    def authorize_connection(
        self, key_id: str, signature: str, string_to_sign: bytes, token: str | None
    ) -> str:
        """The key id a DAX connection's authorizeConnection proves
        (:func:`daxproxy.core.sigv4_dax.verify`); else DynamoDB's error, raised."""
        return sigv4_dax.verify(
            key_id=key_id,
            signature=signature,
            string_to_sign=string_to_sign,
            token=token,
            region=self.region,
            secret_of=self._secret_of,
            now=self._clock(),
            skew_seconds=self._skew,
        )

    def authorize(self, key_id: str, operation: Operation, payload: Mapping[str, Any]) -> None:
        """Raise AccessDeniedException unless the key may do all the request needs."""
        key = self._grants[key_id]
        for action, table in needs(operation, payload):
            if not key.may(action, table):
                raise self._denied(key_id, f"dynamodb:{action}", table)

    def authorize_any(self, key_id: str, actions: Iterable[str], table: str) -> None:
        """Raise AccessDeniedException unless the key may do one of ``actions`` on
        ``table`` (a name or, as in a request, the table's ARN)."""
        key = self._grants[key_id]
        named: Table = _table_name(table) or Unknown.TABLE
        if not any(key.may(action, named) for action in actions):
            raise self._denied(key_id, "any data operation", named)

    def _denied(self, key_id: str, what: str, table: Table) -> AccessDeniedException:
        return AccessDeniedException(
            f"User: {key_id} is not authorized to perform: {what} "
            f"on resource: {self._resource(table)} because no entry of the "
            "proxy's auth_file allows it"
        )

    def _resource(self, table: Table) -> str:
        if table is None:
            return "*"
        if isinstance(table, Unknown):
            return f"{table.value} (the proxy could not read which)"
        return f"arn:aws:dynamodb:{self.region}:*:table/{table}"


# --- The file ------------------------------------------------------------------------


def from_settings(
    settings: Settings, region: str, grants: Mapping[str, Grant] | None
) -> Access | None:
    """The proxy's access check from the grants loaded at start-up; None without
    ``auth_file``. An ``auth_file`` whose grants were not loaded fails closed: the proxy
    must not start without the check it was told to make."""
    if settings.auth_file is None:
        return None
    if grants is None:
        raise SettingError(SETTING, f"{settings.auth_file} was set but not loaded at start-up")
    return Access(grants, region=region, skew_seconds=settings.auth_clock_skew_millis / 1000)


def parse_grants(raw: bytes, path: str, environ: Mapping[str, str]) -> dict[str, Grant]:
    """The grants of an auth file's bytes (read from ``path``, named in messages);
    ``environ``: the variables ``secret_access_key_env`` may name."""
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SettingError(SETTING, f"{path} is not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(SETTING, f"{path} is not valid TOML: {exc}") from None
    extra = sorted(set(document) - {"keys"})
    if extra:
        raise SettingError(SETTING, f"{path}: unknown top-level key {extra[0]!r}; use [[keys]]")
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise SettingError(SETTING, f"{path} has no [[keys]] entries, so no request could pass")
    grants: dict[str, Grant] = {}
    for index, entry in enumerate(entries):
        found = _grant_of(entry, f"{path}: keys[{index}]", environ)
        if found.key_id in grants:
            raise SettingError(
                SETTING, f"{path}: keys[{index}] repeats access_key_id {found.key_id!r}"
            )
        grants[found.key_id] = found
    return grants


def _grant_of(entry: object, where: str, environ: Mapping[str, str]) -> Grant:
    if not isinstance(entry, dict):
        raise SettingError(SETTING, f"{where} is not a table")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise SettingError(
            SETTING,
            f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(_FIELDS))})",
        )
    key_id = entry.get("access_key_id")
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise SettingError(
            SETTING, f"{where}: access_key_id must be an access key id like AKIAIOSFODNN7EXAMPLE"
        )
    where = f"{where} ({key_id})"
    if ("secret_access_key" in entry) == ("secret_access_key_env" in entry):
        raise SettingError(
            SETTING, f"{where}: give exactly one of secret_access_key, secret_access_key_env"
        )
    if "secret_access_key" in entry:
        secret = entry["secret_access_key"]
        if not isinstance(secret, str) or not secret:
            raise SettingError(SETTING, f"{where}: secret_access_key must be a non-empty string")
    else:
        variable = entry["secret_access_key_env"]
        if not isinstance(variable, str) or not variable:
            raise SettingError(SETTING, f"{where}: secret_access_key_env must name a variable")
        secret = environ.get(variable, "")
        if not secret:
            raise SettingError(
                SETTING, f"{where}: environment variable {variable!r} is not set or empty"
            )
    tables = _strings(entry, "tables", where)
    operations = _strings(entry, "operations", where)
    for name in operations:
        try:
            _expand(name)
        except ValueError:
            raise SettingError(
                SETTING,
                f"{where}: {name!r} is neither an operation nor a group "
                f"({', '.join(GROUP_NAMES)}); PartiQL is granted per statement as "
                f"{', '.join(PARTIQL_ACTIONS)}",
            ) from None
    return grant(key_id, secret, tables, operations)


def _strings(entry: dict[str, Any], name: str, where: str) -> list[str]:
    value = entry.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise SettingError(SETTING, f"{where}: {name} must be a non-empty list of strings")
    return value
