"""The expression language of row filters: its grammar (precedence, comparisons, arithmetic,
`in`, `is null`, quoting), its errors (which say what and where), its limits, and that it can
reach nothing but the table's columns. Fuzzed: any text compiles or is refused with
`InputError`, and a compiled expression evaluates to booleans or is refused the same way."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aiaas.core.data.tabular.expressions import (
    MAX_DEPTH,
    MAX_LENGTH,
    CompiledExpression,
    compile_expression,
    evaluate_mask,
)
from aiaas.core.errors import InputError

PEOPLE = pa.table(
    {
        "age": pa.array([15, 30, None, 45, 18], pa.int64()),
        "score": [1.5, None, 3.0, -2.0, 0.0],
        "country": ["FR", "DE", "FR", None, "it's"],
        "member": [True, False, None, True, False],
        "first name": ["Ada", "Bob", "Cy", "Dee", "Eve"],
    }
)
COLUMNS = PEOPLE.column_names


def rows_where(text: str, table: pa.Table = PEOPLE) -> list[bool | None]:
    """The expression's value on each row of `table`."""
    mask: list[bool | None] = evaluate_mask(table, compile_expression(text, COLUMNS)).to_pylist()
    return mask


def refusal(text: str, columns: list[str] = COLUMNS) -> InputError:
    with pytest.raises(InputError) as caught:
        evaluate_mask(PEOPLE, compile_expression(text, columns))
    return caught.value


# The grammar --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age == 30", [False, True, None, False, False]),
        ("age != 30", [True, False, None, True, True]),
        ("age < 30", [True, False, None, False, True]),
        ("age <= 30", [True, True, None, False, True]),
        ("age > 30", [False, False, None, True, False]),
        ("age >= 18", [False, True, None, True, True]),
        ("country == 'FR'", [True, False, True, None, False]),
        ("score > age", [False, None, None, False, False]),
        ("member", [True, False, None, True, False]),
        ("member == true", [True, False, None, True, False]),
    ],
)
def test_comparisons(text: str, expected: list[bool | None]) -> None:
    assert rows_where(text) == expected


def test_and_binds_tighter_than_or() -> None:
    # Read as `age < 16 or (age > 40 and age > 100)`: the `and` is false, so only age 15 holds.
    assert rows_where("age < 16 or age > 40 and age > 100") == [True, False, None, False, False]
    assert rows_where("(age < 16 or age > 40) and age > 100") == [
        False,
        False,
        None,
        False,
        False,
    ]


def test_not_binds_tighter_than_and() -> None:
    # Read as `(not age > 20) and age > 16`.
    assert rows_where("not age > 20 and age > 16") == [False, False, None, False, True]
    assert rows_where("not (age > 20 and age > 16)") == [True, False, None, False, True]


def test_keywords_are_case_insensitive() -> None:
    assert rows_where("NOT age > 20 AND age IS NOT NULL") == rows_where(
        "not age > 20 and age is not null"
    )


def test_unknown_values_follow_kleene_logic() -> None:
    # age is null on row 3: `null or true` is true and `null and false` is false.
    assert rows_where("age > 20 or country == 'FR'")[2] is True
    assert rows_where("age > 20 and country == 'DE'")[2] is False


def test_arithmetic_has_the_usual_precedence() -> None:
    # 2 + 3 * 4 is 14, not 20; and (2 + 3) * 4 is 20.
    assert rows_where("age + 2 + 3 * 4 == 29") == [True, False, None, False, False]
    assert rows_where("(age + 2 + 3) * 4 == 80") == [True, False, None, False, False]
    assert rows_where("age / 2 - 1 == 14") == [False, True, None, False, False]
    assert rows_where("-age < -40") == [False, False, None, True, False]
    assert rows_where("age - -5 == 20") == [True, False, None, False, False]


def test_numbers_may_be_written_as_floats_and_with_exponents() -> None:
    assert rows_where("score >= 1.5e0") == [True, None, True, False, False]
    assert rows_where("score < .5") == [False, None, False, True, True]
    assert rows_where("age == 3e1") == [False, True, None, False, False]


def test_in_and_not_in_a_list_of_literals() -> None:
    assert rows_where("country in ('FR', 'IT')") == [True, False, True, False, False]
    assert rows_where("country not in ('FR', 'IT')") == [False, True, False, True, True]
    assert rows_where("age in (15, -1, 45)") == [True, False, False, True, False]
    assert rows_where("score in (1.5, -2.0)") == [True, False, False, True, False]


def test_is_null_and_is_not_null() -> None:
    assert rows_where("country is null") == [False, False, False, True, False]
    assert rows_where("country is not null") == [True, True, True, False, True]
    assert rows_where("age is null or age < 16") == [True, False, True, False, False]


def test_backquoted_names_may_hold_spaces() -> None:
    assert rows_where("`first name` == 'Bob'") == [False, True, False, False, False]
    compiled = compile_expression("`first name` == 'Bob' and age > 1", COLUMNS)
    assert compiled.columns == frozenset({"first name", "age"})


def test_strings_take_backslash_escapes() -> None:
    assert rows_where(r"country == 'it\'s'") == [False, False, False, None, True]
    assert rows_where(r"'a\\b' == 'a\\b'") == [True] * 5


def test_whitespace_is_free() -> None:
    assert rows_where("age>=18\nand\tage<=30") == rows_where("age >= 18 and age <= 30")


def test_a_compiled_expression_names_the_columns_it_reads() -> None:
    compiled = compile_expression("age > 1 or score < 2 or age is null", COLUMNS)

    assert compiled.columns == frozenset({"age", "score"})
    assert compiled.text == "age > 1 or score < 2 or age is null"


# Errors -------------------------------------------------------------------------------------


def test_an_unknown_column_is_named_and_the_known_ones_listed() -> None:
    problem = refusal("age > 1 and height > 2")

    assert "unknown column 'height'" in problem.message
    assert "position 13" in problem.message
    for column in COLUMNS:
        assert column in problem.message
    assert problem.field_errors == {"expression": "unknown column 'height'"}


def test_column_names_are_case_sensitive() -> None:
    problem = refusal("Age > 1")

    assert "unknown column 'Age'" in problem.message


@pytest.mark.parametrize(
    ("text", "position", "complaint"),
    [
        ("age >", 6, "expected a value, found the end"),
        ("age > > 1", 7, "expected a value, found '>'"),
        ("age > 1 )", 9, "unexpected ')'"),
        ("(age > 1", 9, "expected ')'"),
        ("age = 1", 5, "unexpected character '='"),
        ("age > 1 && age < 2", 9, "unexpected character '&'"),
        ("age is 1", 8, "expected 'null'"),
        ("age not 1", 9, "expected 'in' after 'not'"),
        ("age in ()", 9, "expected a value, found ')'"),
        ("age in (1,)", 11, "expected a value, found ')'"),
        ("age in 1", 8, "expected '('"),
        ("age in (1, 'x')", 16, "the values of a list must share a type"),
        ("country == 'FR", 12, 'unexpected character "\'"'),
        ("``", 1, "unexpected character '`'"),
        ("age > 1 age", 9, "unexpected 'age'"),
        ("", 1, "expected a value, found the end"),
    ],
)
def test_a_syntax_error_says_what_and_where(text: str, position: int, complaint: str) -> None:
    problem = refusal(text)

    assert complaint in problem.message
    assert f"at position {position}" in problem.message
    assert "expression" in problem.field_errors


@pytest.mark.parametrize(
    "text",
    ["age", "age + 1", "'FR'", "1", "null"],
)
def test_an_expression_must_be_true_or_false(text: str) -> None:
    problem = refusal(text)

    assert "must be true or false" in problem.message


@pytest.mark.parametrize(
    "text",
    ["country > 1", "age == 'x'", "member and age", "age / 0 > 1", "age * 9223372036854775807 > 1"],
    ids=["string-vs-number", "number-vs-string", "bool-and-int", "divide-by-zero", "overflow"],
)
def test_an_expression_that_cannot_be_evaluated_on_the_data_is_refused(text: str) -> None:
    problem = refusal(text)

    assert "cannot be evaluated on this data" in problem.message
    assert "expression" in problem.field_errors


@pytest.mark.parametrize("text", ["age < 99999999999999999999", "age in (99999999999999999999)"])
def test_an_integer_literal_too_large_for_int64_is_refused(text: str) -> None:
    refusal(text)


# Limits -------------------------------------------------------------------------------------


def test_an_expression_longer_than_the_limit_is_refused() -> None:
    at_limit = "age > 1" + " " * (MAX_LENGTH - len("age > 1"))
    assert rows_where(at_limit) == rows_where("age > 1")

    problem = refusal(at_limit + " ")

    assert f"longer than {MAX_LENGTH} characters" in problem.message


@pytest.mark.parametrize(
    "nest",
    [
        lambda depth: "(" * depth + "age > 1" + ")" * depth,
        lambda depth: "not " * depth + "member",
        lambda depth: "-" * depth + "age > 1",
    ],
    ids=["parentheses", "not", "negation"],
)
def test_an_expression_nested_deeper_than_the_limit_is_refused(nest: Any) -> None:
    # A little under the limit is fine (the whole expression counts as one level).
    rows_where(nest(MAX_DEPTH - 2))

    problem = refusal(nest(MAX_DEPTH + 1))

    assert "nested too deeply" in problem.message


def test_a_long_flat_expression_within_the_limit_is_fine() -> None:
    # Deep nesting is limited; a long chain of `or`s, built in a loop, is not nesting.
    text = " or ".join(f"age == {n}" for n in range(150))
    assert len(text) < MAX_LENGTH

    assert rows_where(text) == [True, True, None, True, True]


# Nothing but columns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "os.system('true')",
        "age.__class__",
        "country.upper() == 'FR'",
        "len(country) > 1",
        "eval('1') == 1",
        "open('/etc/passwd')",
        "[age]",
        "{age: 1}",
        "lambda: 1",
        "age if member else score",
        "age[0] > 1",
        "f'{age}'",
        "age; import os",
    ],
)
def test_nothing_but_columns_and_operators_is_reachable(text: str) -> None:
    """Calls, attributes, subscripts, imports: not in the grammar, so each is refused as a syntax
    error or an unknown column, before anything runs."""
    with pytest.raises(InputError) as caught:
        compile_expression(text, COLUMNS)

    assert "position" in caught.value.message


# Fuzzing ------------------------------------------------------------------------------------

EXPRESSION_TOKENS = [
    "age", "score", "country", "member", "`first name`", "nope", "and", "or", "not", "is", "in",
    "null", "true", "false", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "(", ")", ",",
    "0", "1", "2.5", "1e3", "-1", "'FR'", "'x\\'y'", "''", "`", "'", ".", "=", "__import__",
]  # fmt: skip

# Arbitrary text finds the tokenizer's corners; sequences of the language's own tokens reach
# the parser and the evaluator far more often.
expression_texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(EXPRESSION_TOKENS), max_size=14).map(" ".join),
)


def compiled_or_refusal(text: str) -> CompiledExpression | InputError:
    try:
        return compile_expression(text, COLUMNS)
    except InputError as exc:
        return exc


def mask_or_refusal(compiled: CompiledExpression) -> pa.ChunkedArray | InputError:
    try:
        return evaluate_mask(PEOPLE, compiled)
    except InputError as exc:
        return exc


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression_texts)
@example("age >= 18 and country in ('FR', 'DE')")
@example("not (score is null) or `first name` == 'x\\'y'")
@example("(" * 100)
@example("a" * (MAX_LENGTH + 1))
def test_any_text_compiles_or_is_refused_and_evaluates_to_booleans_or_is_refused(
    text: str,
) -> None:
    # Any other exception escapes these helpers and fails the test.
    compiled = compiled_or_refusal(text)
    if isinstance(compiled, InputError):
        assert "expression" in compiled.field_errors
        return
    assert compiled.columns <= set(COLUMNS)
    mask = mask_or_refusal(compiled)
    if isinstance(mask, InputError):
        assert "expression" in mask.field_errors
        return
    assert mask.type == pa.bool_()
    assert len(mask) == PEOPLE.num_rows
