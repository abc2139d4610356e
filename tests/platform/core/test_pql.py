"""The PQL compiler: examples, errors with positions, and fuzzing against a Python reference on DuckDB/PostgreSQL."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from datetime import date, timedelta

import duckdb
import pandas as pd
import psycopg2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aep_propensity.platform import Field
from aep_propensity.platform.core.pql import (
    MAX_NESTING,
    And,
    Comparison,
    CompiledRule,
    Constant,
    InList,
    IsNull,
    Node,
    Not,
    Or,
    Path,
    PqlError,
    StringMatch,
    compile_pql,
    parse_pql,
)
from aep_propensity.platform.core.sql import transpile
from tests.conftest import PG_DSN, require_postgres

FIELDS = {
    "_acme.propensity": Field("propensity", "number"),
    "loyalty.points": Field("points", "number"),
    "person.gender": Field("gender", "string"),
    "loyalty.tier": Field("tier", "string"),
    "_acme.optIn": Field("opt_in", "boolean"),
    "_acme.isVip": Field("is_vip", "boolean"),
    "person.birthDate": Field("birth_date", "date"),
    "_acme.lastPurchase": Field("last_purchase", "date"),
}
#: Column types of the table the fuzz rules run on: DuckDB, PostgreSQL (strings in binary order), pandas.
COLUMNS = {
    "propensity": ("DOUBLE", "DOUBLE PRECISION", "Float64"),
    "points": ("BIGINT", "BIGINT", "Int64"),
    "gender": ("VARCHAR", 'TEXT COLLATE "C"', "string"),
    "tier": ("VARCHAR", 'TEXT COLLATE "C"', "string"),
    "opt_in": ("BOOLEAN", "BOOLEAN", "boolean"),
    "is_vip": ("BOOLEAN", "BOOLEAN", "boolean"),
    "birth_date": ("DATE", "DATE", "object"),
    "last_purchase": ("DATE", "DATE", "object"),
}
#: Everything a compiled predicate may consist of: quoted known columns, placeholders, fixed SQL words.
SAFE_SQL = re.compile(
    r"(?:\s+|\"(?:" + "|".join(COLUMNS) + r")\"|\?|[(),]|<>|<=|>=|[=<>]|0"
    r"|AND|OR|NOT|IN|IS|NULL|strpos|starts_with|right|length|lower)*"
)
OPERATORS: dict[str, Callable[[object, object], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
STRING_MATCHES: dict[str, Callable[[str, str], bool]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": str.__contains__,
}
FUZZ = settings(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_safe(compiled: CompiledRule) -> None:
    """The predicate holds no rule text, one placeholder per parameter, and transpiles in order."""
    assert SAFE_SQL.fullmatch(compiled.predicate), compiled.predicate
    assert compiled.predicate.count("?") == len(compiled.params)
    postgres = transpile(f"SELECT 1 WHERE {compiled.predicate}", "postgres")
    assert postgres.count("%s") == len(compiled.params), postgres
    numbered = iter(range(len(compiled.params)))
    marked = re.sub(r"\?", lambda _: f'"p{next(numbered)}_"', compiled.predicate)
    order = [int(n) for n in re.findall(r'"p(\d+)_"', transpile(f"SELECT 1 WHERE {marked}", "postgres"))]
    assert order == list(range(len(compiled.params))), postgres


# ---------------------------------------------------------------- examples


@pytest.mark.parametrize(
    ("rule", "predicate", "params"),
    [
        (
            "_acme.propensity >= 0.2 and _acme.propensity <= 0.93",
            '(("propensity" >= ?) AND ("propensity" <= ?))',
            (0.2, 0.93),
        ),
        ('person.gender = "female"', '("gender" = ?)', ("female",)),
        ('loyalty.tier != "gold"', '("tier" <> ?)', ("gold",)),
        ("loyalty.points > -201", '("points" > ?)', (-201,)),
        ('loyalty.tier in ["gold", "platinum"]', '("tier" IN (?, ?))', ("gold", "platinum")),
        ("loyalty.points in [3, 6, 9]", '("points" IN (?, ?, ?))', (3, 6, 9)),
        ('loyalty.tier notIn ["gold"]', '(NOT ("tier" IN (?)))', ("gold",)),
        ('person.gender.contains("ema")', '(strpos("gender", ?) > 0)', ("ema",)),
        ('person.gender.startsWith("fe")', 'starts_with("gender", ?)', ("fe",)),
        ('person.gender.endsWith("male")', '(right("gender", length(?)) = ?)', ("male", "male")),
        ('person.gender.doesNotStartWith("f")', '(NOT starts_with("gender", ?))', ("f",)),
        ('person.gender.doesNotEndWith("e", true)', '(NOT (right("gender", length(?)) = ?))', ("e", "e")),
        ('person.gender.contains("EMA", false)', '(strpos(lower("gender"), lower(?)) > 0)', ("EMA",)),
        ('person.gender.startsWith("F", false)', 'starts_with(lower("gender"), lower(?))', ("F",)),
        (
            'person.gender.endsWith("LE", false)',
            '(right(lower("gender"), length(lower(?))) = lower(?))',
            ("LE", "LE"),
        ),
        ("person.birthDate < date(2020, 1, 31)", '("birth_date" < ?)', (date(2020, 1, 31),)),
        (
            "_acme.lastPurchase >= person.birthDate and _acme.lastPurchase != date(1999, 12, 31)",
            '(("last_purchase" >= "birth_date") AND ("last_purchase" <> ?))',
            (date(1999, 12, 31),),
        ),
        ("_acme.optIn = true", '("opt_in" = ?)', (True,)),
        ("_acme.isVip != false", '("is_vip" <> ?)', (False,)),
        ("person.gender.isNull()", '("gender" IS NULL)', ()),
        ("_acme.propensity.isNotNull()", '(NOT ("propensity" IS NULL))', ()),
        (
            'not person.gender = "f" and loyalty.points = 1 or _acme.optIn = true',
            '(((NOT ("gender" = ?)) AND ("points" = ?)) OR ("opt_in" = ?))',
            ("f", 1, True),
        ),
        (
            'not (person.gender = "f" and (loyalty.points = 1 or _acme.optIn = true))',
            '(NOT (("gender" = ?) AND (("points" = ?) OR ("opt_in" = ?))))',
            ("f", 1, True),
        ),
        ('!(person.gender = "f")', '(NOT ("gender" = ?))', ("f",)),
    ],
)
def test_examples(rule, predicate, params):
    compiled = compile_pql(rule, FIELDS)
    assert compiled.predicate == predicate
    assert compiled.params == params
    assert [type(p) for p in compiled.params] == [type(p) for p in params]
    assert_safe(compiled)


def test_fields_lists_the_paths_used_once_in_order():
    compiled = compile_pql('loyalty.tier = "a" or _acme.optIn = true and loyalty.tier.isNull()', FIELDS)
    assert compiled.fields == ("loyalty.tier", "_acme.optIn")


@pytest.mark.parametrize(
    ("rule", "tree"),
    [
        (
            "_acme.optIn = true or loyalty.points = 1 and not person.gender.isNull()",
            Or(
                (
                    Comparison("=", Path("_acme.optIn"), Constant(True)),
                    And((Comparison("=", Path("loyalty.points"), Constant(1)), Not(IsNull(Path("person.gender"))))),
                )
            ),
        ),
        (
            "(_acme.optIn = true or loyalty.points = 1) and not (person.gender.isNull())",
            And(
                (
                    Or(
                        (
                            Comparison("=", Path("_acme.optIn"), Constant(True)),
                            Comparison("=", Path("loyalty.points"), Constant(1)),
                        )
                    ),
                    Not(IsNull(Path("person.gender"))),
                )
            ),
        ),
        (
            "a.b = 1 or c = 2 or d = 3",
            Or(tuple(Comparison("=", Path(p), Constant(n)) for p, n in [("a.b", 1), ("c", 2), ("d", 3)])),
        ),
        (
            "a.b = 1 or (c = 2 or d = 3)",
            Or(
                (
                    Comparison("=", Path("a.b"), Constant(1)),
                    Or((Comparison("=", Path("c"), Constant(2)), Comparison("=", Path("d"), Constant(3)))),
                )
            ),
        ),
        ("not not x.y = 1", Not(Not(Comparison("=", Path("x.y"), Constant(1))))),
        ('x notIn ["a"]', Not(InList(Path("x"), (Constant("a"),)))),
        ("x.isNotNull()", Not(IsNull(Path("x")))),
        ('x.doesNotEndWith("a", false)', Not(StringMatch(Path("x"), "endsWith", "a", case_sensitive=False))),
        ('x.y.contains("a", true)', StringMatch(Path("x.y"), "contains", "a")),
        ("\n x\t>=\r-0.5 ", Comparison(">=", Path("x"), Constant(-0.5))),
        ('x = "tab\\\\ \\" é"', Comparison("=", Path("x"), Constant('tab\\ " é'))),
        ("date = date(2020, 2, 29)", Comparison("=", Path("date"), Constant(date(2020, 2, 29)))),
    ],
)
def test_precedence_and_sugar(rule, tree):
    assert parse_pql(rule) == tree


def test_injection_looking_string_is_one_bound_parameter():
    compiled = compile_pql('person.gender = "x\\"; DROP TABLE t; --"', FIELDS)
    assert compiled.predicate == '("gender" = ?)'
    assert compiled.params == ('x"; DROP TABLE t; --',)
    connection = duckdb.connect()
    connection.execute("CREATE TABLE t (gender VARCHAR)")
    connection.execute("INSERT INTO t VALUES ('x\"; DROP TABLE t; --'), ('x')")
    assert connection.execute(f"SELECT count(*) FROM t WHERE {compiled.predicate}", compiled.params).fetchall() == [
        (1,)
    ]


def test_nesting_is_bounded_so_parser_compiler_and_sqlglot_never_recurse_too_deep():
    deepest = "not (loyalty.points = 1 and " * (MAX_NESTING // 2) + "loyalty.points = 1" + ")" * (MAX_NESTING // 2)
    for rule in (
        deepest,
        "not " * MAX_NESTING + "loyalty.points = 1",
        "(" * MAX_NESTING + "_acme.optIn = true" + ")" * MAX_NESTING,
    ):
        assert_safe(compile_pql(rule, FIELDS))
    with pytest.raises(PqlError, match=f"rule nested more than {MAX_NESTING} levels deep at position {MAX_NESTING}"):
        parse_pql("(" * (MAX_NESTING + 1) + "x = 1" + ")" * (MAX_NESTING + 1))
    with pytest.raises(
        PqlError, match=f"rule nested more than {MAX_NESTING} levels deep at position {4 * MAX_NESTING}"
    ):
        parse_pql("not " * (MAX_NESTING + 1) + "x = 1")


def test_long_chains_are_flat():
    compiled = compile_pql(" or ".join(["loyalty.points = 1"] * 1000), FIELDS)
    assert compiled.predicate == "(" + " OR ".join(['("points" = ?)'] * 1000) + ")"
    assert compiled.params == (1,) * 1000
    assert_safe(compiled)


def test_field_validates_column_and_type():
    with pytest.raises(ValueError, match="invalid column name"):
        Field('gender"; --', "string")
    with pytest.raises(ValueError, match="field type"):
        Field("gender", "integer")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("", "empty rule at position 0"),
        ("   ", "empty rule at position 0"),
        ('person.gender = "f" and person.age > 3', "unknown field 'person.age' at position 24"),
        (
            "loyalty.points = person.gender",
            "cannot compare number field 'loyalty.points' with string field 'person.gender' at position 17",
        ),
        ('loyalty.points = "3"', "cannot compare number field 'loyalty.points' with string value at position 17"),
        ("person.gender = 3", "cannot compare string field 'person.gender' with number value at position 16"),
        ("person.birthDate > 2020", "cannot compare date field 'person.birthDate' with number value at position 19"),
        ('loyalty.tier in ["a", 1]', "cannot compare string field 'loyalty.tier' with number value at position 22"),
        ("_acme.optIn >= true", "operator '>=' does not apply to boolean field '_acme.optIn' at position 12"),
        ('loyalty.points.contains("1")', "contains() needs a string field; 'loyalty.points' is number at position 15"),
        ('person.gender = "abc', "unterminated string at position 16"),
        ('person.gender = "a\\"', "unterminated string at position 16"),
        ('person.gender = "a\\n"', "unsupported escape '\\n' in string at position 18"),
        ('person.gender = "a" junk', "expected 'and', 'or' or end of rule, found 'junk' at position 20"),
        ('person.gender = "a"; DROP TABLE t', "unexpected character ';' at position 19"),
        ('(person.gender = "a"', "expected ')', found end of rule at position 20"),
        ('person.gender = "a")', "expected 'and', 'or' or end of rule, found ')' at position 19"),
        ('person.gender = "a" and', "expected a field path, found end of rule at position 23"),
        (
            'person.gender = "a" AND loyalty.points = 1',
            "expected 'and', 'or' or end of rule, found 'AND' at position 20",
        ),
        (
            "person.gender",
            "expected a comparison, 'in', 'notIn' or a method after 'person.gender', found end of rule at position 13",
        ),
        (
            'person.gender like "%a%"',
            "expected a comparison, 'in', 'notIn' or a method after 'person.gender', found 'like' at position 14",
        ),
        ('person.gender.matches("a")', "unsupported function 'matches' at position 14"),
        ('upper(person.gender) = "A"', "unsupported function 'upper' at position 0"),
        ("loyalty.points + 1 > 2", "unexpected character '+' at position 15"),
        ("loyalty.points > 1e5", "expected 'and', 'or' or end of rule, found 'e5' at position 18"),
        ("loyalty.points = 99999999999999999999", "integer 99999999999999999999 is out of range at position 17"),
        ("loyalty.points in []", "empty list at position 19"),
        ("loyalty.points in [1,]", "expected a value, found ']' at position 21"),
        ("person.birthDate = date(2021, 2, 29)", "invalid date (day is out of range for month) at position 19"),
        (
            'person.birthDate = date("2020-01-31")',
            "expected the year as an integer, found '\"2020-01-31\"' at position 24",
        ),
        ("person.gender.startsWith(1)", "startsWith() needs a string, found '1' at position 25"),
        (
            'person.gender.startsWith("a", "no")',
            "startsWith() takes true or false as its case flag, found '\"no\"' at position 30",
        ),
        ("person.gender.isNull(1)", "expected ')', found '1' at position 21"),
        ('"a" = person.gender', "expected a field path, found '\"a\"' at position 0"),
        ("$1.person.gender = 1", "unexpected character '$' at position 0"),
        ("xEvent.x = 1", "unknown field 'xEvent.x' at position 0"),
    ],
)
def test_errors_name_the_problem_and_position(rule, message):
    with pytest.raises(PqlError) as error:
        compile_pql(rule, FIELDS)
    assert str(error.value) == message
    assert 0 <= error.value.position <= len(rule)


# ---------------------------------------------------------------- fuzzing: a reference evaluator

NUMBERS = st.one_of(st.integers(-3, 3), st.integers(-12, 12).map(lambda i: i / 4))
STRINGS = st.text(alphabet="aAb", max_size=3) | st.text(alphabet="aAbB é☃'\"\\;%_-", max_size=3)
DATES = st.integers(0, 6).map(lambda days: date(2020, 1, 1) + timedelta(days=days))
VALUES = {"number": NUMBERS, "string": STRINGS, "boolean": st.booleans(), "date": DATES}
CELLS = {
    "propensity": NUMBERS.map(float),
    "points": st.integers(-3, 3),
    "gender": STRINGS,
    "tier": STRINGS,
    "opt_in": st.booleans(),
    "is_vip": st.booleans(),
    "birth_date": DATES,
    "last_purchase": DATES,
}
ROWS = st.lists(st.fixed_dictionaries({column: st.none() | cell for column, cell in CELLS.items()}), max_size=12)


def paths_of(kind: str | None = None) -> st.SearchStrategy[str]:
    """Field paths of type ``kind`` (any type when None)."""
    return st.sampled_from(sorted(path for path, spec in FIELDS.items() if kind in (None, spec.type)))


@st.composite
def comparisons(draw: st.DrawFn) -> Comparison:
    """A comparison of a field with a value or another field of its type."""
    path = draw(paths_of())
    kind = FIELDS[path].type
    op = draw(st.sampled_from(["=", "!="] if kind == "boolean" else sorted(OPERATORS)))
    right = draw(st.one_of(VALUES[kind].map(Constant), paths_of(kind).map(Path)))
    return Comparison(op, Path(path), right)


@st.composite
def in_lists(draw: st.DrawFn) -> InList:
    """``path in [...]`` with values of the field's type."""
    path = draw(paths_of())
    values = draw(st.lists(VALUES[FIELDS[path].type].map(Constant), min_size=1, max_size=3))
    return InList(Path(path), tuple(values))


LEAVES = st.one_of(
    comparisons(),
    in_lists(),
    st.builds(
        StringMatch,
        paths_of("string").map(Path),
        st.sampled_from(["startsWith", "endsWith", "contains"]),
        st.text(alphabet="aA", min_size=1, max_size=2) | STRINGS,
        st.booleans(),
    ),
    paths_of().map(Path).map(IsNull),
)
TREES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        children.map(Not),
        st.lists(children, min_size=2, max_size=3).map(tuple).map(And),
        st.lists(children, min_size=2, max_size=3).map(tuple).map(Or),
    ),
    max_leaves=6,
)


def precedence(node: Node) -> int:
    """Binding strength: or < and < not < conditions."""
    return {Or: 1, And: 2, Not: 3}.get(type(node), 4)


def render_value(value: object) -> str:
    """A literal in PQL syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, date):
        return f"date({value.year}, {value.month}, {value.day})"
    return repr(value)


def render(node: Node) -> str:
    """PQL text for a tree, with only the parentheses precedence needs."""
    if isinstance(node, (And, Or)):
        parts = [render(o) if precedence(o) > precedence(node) else f"({render(o)})" for o in node.operands]
        return (" and " if isinstance(node, And) else " or ").join(parts)
    if isinstance(node, Not):
        inner = render(node.operand)
        return f"not ({inner})" if precedence(node.operand) < precedence(node) else f"not {inner}"
    if isinstance(node, Comparison):
        right = node.right.name if isinstance(node.right, Path) else render_value(node.right.value)
        return f"{node.left.name} {node.op} {right}"
    if isinstance(node, InList):
        return f"{node.path.name} in [{', '.join(render_value(c.value) for c in node.values)}]"
    if isinstance(node, StringMatch):
        flag = "" if node.case_sensitive else ", false"
        return f"{node.path.name}.{node.function}({render_value(node.pattern)}{flag})"
    return f"{node.path.name}.isNull()"


def evaluate(node: Node, row: dict) -> bool | None:
    """The reference: SQL's three-valued logic, in Python (None is unknown)."""
    if isinstance(node, (And, Or)):
        values = [evaluate(operand, row) for operand in node.operands]
        decisive = isinstance(node, Or)
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    if isinstance(node, Not):
        inner = evaluate(node.operand, row)
        return None if inner is None else not inner
    return evaluate_condition(node, row)


def evaluate_condition(node: Comparison | InList | StringMatch | IsNull, row: dict) -> bool | None:
    """The reference for one condition: unknown over a NULL field, except for ``isNull``."""
    value = row[FIELDS[(node.left if isinstance(node, Comparison) else node.path).name].column]
    if isinstance(node, IsNull):
        return value is None
    if value is None:
        return None
    if isinstance(node, InList):
        return value in [c.value for c in node.values]
    if isinstance(node, Comparison):
        right = row[FIELDS[node.right.name].column] if isinstance(node.right, Path) else node.right.value
        return None if right is None else OPERATORS[node.op](value, right)
    pattern = node.pattern
    if not node.case_sensitive:
        value, pattern = value.lower(), pattern.lower()
    return STRING_MATCHES[node.function](value, pattern)


def members(tree: Node, rows: list[dict]) -> list[int]:
    """Row ids for which the reference says the rule is true."""
    return [i for i, row in enumerate(rows) if evaluate(tree, row) is True]


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection."""
    connection = duckdb.connect()
    yield connection
    connection.close()


def load_duckdb(connection: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
    """Replace table ``t`` with ``rows`` (plus ``row_id``) through a pandas DataFrame."""
    frame = pd.DataFrame(
        {"row_id": pd.array(range(len(rows)), dtype="Int64")}
        | {
            column: pd.Series([row[column] for row in rows], dtype=dtype, index=range(len(rows)))
            for column, (_, _, dtype) in COLUMNS.items()
        }
    )
    connection.register("frame", frame)
    casts = ", ".join(f"CAST({column} AS {duck_type}) AS {column}" for column, (duck_type, _, _) in COLUMNS.items())
    connection.execute(f"CREATE OR REPLACE TABLE t AS SELECT row_id, {casts} FROM frame")
    connection.unregister("frame")


def test_render_round_trips_through_the_parser():
    a, b, c = IsNull(Path("a")), IsNull(Path("b")), IsNull(Path("c"))
    tree = And((Or((a, Not(b))), And((b, c)), Or((c, Not(And((a, b)))))))
    assert render(tree) == (
        "(a.isNull() or not b.isNull()) and (b.isNull() and c.isNull())"
        " and (c.isNull() or not (a.isNull() and b.isNull()))"
    )
    assert parse_pql(render(tree)) == tree


@settings(FUZZ, max_examples=120)
@given(trees=st.lists(TREES, min_size=1, max_size=4), rows=ROWS)
def test_fuzz_duckdb_matches_reference(duck, trees, rows):
    load_duckdb(duck, rows)
    for tree in trees:
        text = render(tree)
        assert parse_pql(text) == tree
        compiled = compile_pql(text, FIELDS)
        assert_safe(compiled)
        found = duck.execute(f"SELECT row_id FROM t WHERE {compiled.predicate} ORDER BY row_id", compiled.params)
        expected = members(tree, rows)
        event("members: " + ("none" if not expected else "all" if len(expected) == len(rows) else "some"))
        assert [row_id for (row_id,) in found.fetchall()] == expected, text
        count = duck.execute(f"SELECT count(*) FROM t WHERE {compiled.predicate}", compiled.params).fetchall()
        assert count == [(len(expected),)]


@pytest.fixture(scope="module")
def pg_cursor() -> Iterator[psycopg2.extensions.cursor]:
    """A PostgreSQL session holding an empty temporary table ``t``."""
    require_postgres()
    connection = psycopg2.connect(PG_DSN)
    connection.autocommit = True
    with connection.cursor() as cursor:
        columns = ", ".join(f"{column} {pg_type}" for column, (_, pg_type, _) in COLUMNS.items())
        cursor.execute(f"CREATE TEMPORARY TABLE t (row_id BIGINT, {columns})")
        yield cursor
    connection.close()


@pytest.mark.postgres
@settings(FUZZ, max_examples=40)
@given(trees=st.lists(TREES, min_size=1, max_size=4), rows=ROWS)
def test_fuzz_postgres_matches_reference(pg_cursor, trees, rows):
    pg_cursor.execute("TRUNCATE t")
    names = ["row_id", *COLUMNS]
    pg_cursor.executemany(
        f"INSERT INTO t ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
        [(i, *(row[column] for column in COLUMNS)) for i, row in enumerate(rows)],
    )
    for tree in trees:
        compiled = compile_pql(render(tree), FIELDS)
        sql = transpile(f"SELECT row_id FROM t WHERE {compiled.predicate} ORDER BY row_id", "postgres")
        pg_cursor.execute(sql, compiled.params)
        assert [row_id for (row_id,) in pg_cursor.fetchall()] == members(tree, rows), render(tree)


# ---------------------------------------------------------------- fuzzing: junk never escapes as SQL

PQL_CHARACTERS = "abcxyz_.AZ019 \t()[],\"\\!=<>-+*/;'$%"
WORDS = [
    "person.gender", "_acme.propensity", "_acme.optIn", "person.birthDate", "unknown.path", "and", "or", "not",
    "!", "(", ")", "=", "!=", "<", ">=", "in", "notIn", "[", "]", ",", '"a"', '"x\\"; --"', "1", "-0.5", "true",
    "date(2020, 1, 2)", "date", ".contains(", ".startsWith(", ".endsWith(", ".isNull()", ".isNotNull()", "false",
]  # fmt: skip


@st.composite
def mutated_rules(draw: st.DrawFn) -> str:
    """A valid rule truncated, or with a character inserted, deleted or replaced."""
    text = render(draw(TREES))
    at = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from(PQL_CHARACTERS) | st.characters(codec="utf-8"))
    truncated, inserted = text[:at], text[:at] + char + text[at:]
    deleted, replaced = text[:at] + text[at + 1 :], text[:at] + char + text[at + 1 :]
    return draw(st.sampled_from([truncated, inserted, deleted, replaced]))


JUNK = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=PQL_CHARACTERS, max_size=40),
    st.lists(st.sampled_from(WORDS), max_size=10).map(" ".join),
    st.lists(st.sampled_from(WORDS), max_size=10).map("".join),
    mutated_rules(),
)


@settings(FUZZ, max_examples=300)
@given(text=JUNK)
def test_fuzz_junk_raises_pql_error_or_compiles_safely(duck, text):
    try:
        compiled = compile_pql(text, FIELDS)
    except PqlError as error:
        event("PqlError")
        assert str(error).endswith(f" at position {error.position}")
        assert 0 <= error.position <= len(text)
        return
    event("compiled")
    assert_safe(compiled)
    load_duckdb(duck, [])
    assert duck.execute(f"SELECT count(*) FROM t WHERE {compiled.predicate}", compiled.params).fetchall() == [(0,)]
