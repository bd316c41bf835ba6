"""Hypothesis strategies for DAX calls with arguments of random type and shape.

:func:`dax_calls` draws a method (each id DAX frames) and its arity's arguments, as the
CBOR bytes that arrive, mostly plausible (a known table of :data:`SCHEMAS`, a well-encoded
key, an options map with DAX's keys holding values of every type, a values payload naming
an attribute list of :data:`LIST_IDS`), so that the codec is met past its first check;
sometimes anything at all. Used by the sans-IO fuzz (``tests/unit/dax/test_calls_fuzz.py``)
and the real proxy's (``tests/integration/test_dax_fuzz.py``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import cbor2
from hypothesis import strategies as st

from daxproxy.core.keys import KeySchema
from daxproxy.dax import cbor, methods, values
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.methods import METHODS, Method, Param

HASH_TABLE, RANGE_TABLE = "dax_fuzz_s", "dax_fuzz_sn"
SCHEMAS = {HASH_TABLE: KeySchema("pk", "S"), RANGE_TABLE: KeySchema("pk", "S", "sk", "N")}
# A bignum of 5001 digits, as CBOR writes it (an int that big has no repr to report).
BIGNUM = cbor2.CBORTag(2, (10**5000).to_bytes(2077, "big"))
# The attribute lists the values payloads name, and the ids a fresh server gives them.
LIST_NAMES = (("a",), ("a", "b"))
_FRESH = AttributeLists()
LIST_IDS = {_FRESH.id_of(names): len(names) for names in LIST_NAMES}  # id: names it has
BY_NAME: dict[str, Method] = {m.name: m for m in METHODS.values()}

# Numbers at DynamoDB's edges and past them (a bignum of 5001 digits, NaN, 1E+999999).
edge_numbers = st.sampled_from(
    [BIGNUM, -(10**126), 2**64, Decimal("1E+999999"), Decimal("-0"), Decimal("NaN")]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    edge_numbers,
    st.floats(),
    st.decimals(places=2),
    st.text(max_size=6),
    st.binary(max_size=8),
)
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.integers(-2, 24), st.text(max_size=3)), inner, max_size=3),
        st.tuples(st.sampled_from([3321, 3322, 3323, 3324]), inner).map(
            lambda t: cbor2.CBORTag(*t)
        ),
    ),
    max_leaves=8,
)
# Expression trees and paths as the clients compile them: nested arrays of small ints,
# names and values; CBOR-encoded, as the clients send them.
tree_items = st.recursive(
    st.one_of(st.integers(-2, 40), st.text(max_size=3), st.binary(max_size=3), anything),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=10,
)
trees = tree_items.map(cbor.dumps)
tables = st.sampled_from([HASH_TABLE, RANGE_TABLE])


@st.composite
def values_payloads(draw: st.DrawFn) -> bytes:
    """A values payload naming a known list, its values of any type (plausible ones too)."""
    list_id = draw(st.sampled_from(sorted(LIST_IDS)))
    count = LIST_IDS[list_id]
    values = draw(
        st.lists(st.one_of(edge_numbers, anything, tree_items), min_size=count, max_size=count)
    )
    return cbor.dumps(list_id) + b"".join(cbor.dumps(v) for v in values)


@st.composite
def keys(draw: st.DrawFn) -> bytes:
    schema = SCHEMAS[draw(tables)]
    key = {"pk": {"S": draw(st.text(max_size=4))}}
    if schema.range_name is not None:
        key["sk"] = {"N": str(draw(st.decimals(-(10**6), 10**6, places=2)))}
    return values.encode_key(key, schema)


option_values = st.one_of(
    st.integers(-3, 5), st.lists(st.integers(0, 3), max_size=2), st.booleans(), trees, anything
)
options = st.one_of(
    st.dictionaries(st.sampled_from([int(p) for p in Param]), option_values, max_size=4),
    anything,
)
table_names = st.one_of(tables.map(str.encode), tables, tables, anything)
slots = st.one_of(keys(), options, trees, table_names, anything)
requests_by_table = st.dictionaries(
    st.one_of(tables, tables, st.text(max_size=2)),
    st.one_of(
        st.tuples(anything, st.one_of(st.none(), trees), st.lists(keys(), max_size=2)).map(list),
        st.lists(st.one_of(keys(), st.none(), st.binary(max_size=6), anything), max_size=4),
        anything,
    ),
    max_size=2,
)
operations = st.lists(st.sampled_from([2, 7, 9, 12, 0, True]) | anything, min_size=1, max_size=2)
PLAUSIBLE: dict[int, list[st.SearchStrategy[Any]]] = {
    methods.AUTHORIZE_CONNECTION.id: [anything] * 5,
    methods.DEFINE_KEY_SCHEMA.id: [table_names],
    methods.DEFINE_ATTRIBUTE_LIST_ID.id: [st.lists(st.text(max_size=3), max_size=3) | anything],
    methods.DEFINE_ATTRIBUTE_LIST.id: [st.integers(-2, 2**64) | anything],
    methods.GET_ITEM.id: [table_names, keys(), options],
    methods.PUT_ITEM.id: [table_names, keys(), values_payloads() | anything, options],
    methods.DELETE_ITEM.id: [table_names, keys(), options],
    methods.UPDATE_ITEM.id: [table_names, keys(), options],
    methods.QUERY.id: [table_names, trees, options],
    methods.SCAN.id: [table_names, options],
    methods.BATCH_GET_ITEM.id: [requests_by_table, options],
    methods.BATCH_WRITE_ITEM.id: [requests_by_table, options],
    methods.TRANSACT_GET_ITEMS.id: [st.lists(tables, min_size=1, max_size=2)] + [slots] * 3,
    methods.TRANSACT_WRITE_ITEMS.id: [operations, st.lists(tables, min_size=1, max_size=2)]
    + [st.lists(slots, min_size=1, max_size=2) | slots] * 7,
}


@st.composite
def dax_calls(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    """A method's name and its arguments' CBOR bytes, as they arrive."""
    method = METHODS[draw(st.sampled_from(sorted(METHODS)))]
    plausible = PLAUSIBLE.get(method.id, [])
    # Mostly plausible, sometimes anything at all.
    return method.name, [cbor.dumps(draw(st.one_of(s, s, s, anything))) for s in plausible]
