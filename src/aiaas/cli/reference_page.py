"""docs/reference.md (`aiaas export-reference`): every expectation kind, cleaning step and
promotion gate, with its arguments, generated from the shapes the code declares
(`aiaas.core.arguments`).

The kinds are those of the built-in plugins alone, whatever is installed, so that the committed
page can be checked against them. `aiaas export-reference` prints it; a test fails while the
committed page differs, and sends each of its examples through the API, so that none can rot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiaas.core.arguments import Argument, KindShape
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import build_config
from aiaas.core.data import STEP_SHAPES, validators_by_kind
from aiaas.core.data.expectations import EXPECTATION_ARGUMENTS, shapes_by_kind
from aiaas.core.data.tabular import expressions
from aiaas.core.training import GATE_ARGUMENTS, gate_validators

EXAMPLE_CSV = """\
customer_id,age,country,email,signup_date,last_order_date,visits
1,34,FR,ana@example.com,2024-01-05,2024-03-01,3
2,,DE,ben@example.com,2024-02-11,2024-02-20,
3,51,FR,chloe@example.com,2024-02-15,2024-04-02,7
3,51,FR,chloe@example.com,2024-02-15,2024-04-02,7
4,17,US,dan@example,2024-03-20,2024-03-19,1
"""
"""The dataset every example on the page refers to."""

EXPECTATIONS = "Expectations"
STEPS = "Cleaning steps"
GATES = "Promotion gates"
"""The page's sections with examples: a test finds each example by the section it is in."""

_ENUM_ARGUMENTS = ("kind", "strategy")
"""The arguments of a cleaning step that GraphQL takes as enums, in capitals."""


def builtin_shapes() -> dict[str, list[KindShape]]:
    """The shapes of the built-in kinds, by the section of the page that lists them."""
    platform = create_platform(build_config({"disable_plugin_autoload": True}))
    expectation_kinds = {
        kind: validator for kind, (_, validator) in validators_by_kind(platform).items()
    }
    return {
        EXPECTATIONS: _in_order(shapes_by_kind(expectation_kinds)),
        STEPS: list(STEP_SHAPES),
        GATES: _in_order(shapes_by_kind(gate_validators(platform))),
    }


def _in_order(shapes: Mapping[str, KindShape]) -> list[KindShape]:
    return [shapes[kind] for kind in sorted(shapes)]


def graphql_step(step: Mapping[str, Any]) -> dict[str, Any]:
    """A cleaning step as `transformDatasetVersion` takes it: its enums in capitals."""
    return {
        key: value.upper() if key in _ENUM_ARGUMENTS and isinstance(value, str) else value
        for key, value in step.items()
    }


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _type_of(argument: Argument, enums: Sequence[str]) -> str:
    if argument.choices and argument.name in enums:
        return f"enum: {', '.join(f'`{c.upper()}`' for c in argument.choices)}"
    if argument.choices:
        return f"{argument.type.value}: {', '.join(f'`{c}`' for c in argument.choices)}"
    return argument.type.value


def _argument_table(arguments: Sequence[Argument], enums: Sequence[str] = ()) -> list[str]:
    rows = [
        f"| `{argument.name}` | {_type_of(argument, enums)} "
        f"| {'yes' if argument.required else 'no'} "
        f"| {argument.default or '-'} | {argument.meaning} |"
        for argument in arguments
    ]
    return [
        "| argument | type | required | default | meaning |",
        "|---|---|---|---|---|",
        *rows,
    ]


def _example(value: Mapping[str, Any]) -> list[str]:
    return ["```json", _json(value), "```"]


def _kind_section(
    shape: KindShape, example: Mapping[str, Any], enums: Sequence[str] = ()
) -> list[str]:
    lines = [f"### `{shape.kind}`", "", shape.summary, ""]
    if shape.arguments:
        lines += [*_argument_table(shape.arguments, enums), ""]
    else:
        lines += ["It takes no arguments.", ""]
    if shape.at_least_one_of:
        names = " and ".join(f"`{name}`" for name in shape.at_least_one_of)
        lines += [f"Give at least one of {names}.", ""]
    return [*lines, *_example(example), ""]


def _common_section(
    family: str, arguments: Sequence[Argument], shapes: Sequence[KindShape]
) -> list[str]:
    example = {
        **shapes[0].example,
        **{argument.name: argument.example for argument in arguments},
    }
    return [
        f"Every {family} takes these besides `kind` and the arguments of its kind:",
        "",
        *_argument_table(arguments),
        "",
        *_example(example),
        "",
    ]


def _grammar() -> list[str]:
    """The grammar of the expression language, as `expressions` states it."""
    lines = (expressions.__doc__ or "").splitlines()
    return [line[4:] for line in lines if line.startswith("    ")]


def _kinds(shapes: Iterable[KindShape]) -> str:
    return ", ".join(f"[`{shape.kind}`](#{shape.kind})" for shape in shapes)


_INTRO = """\
# Reference: expectations, cleaning steps and promotion gates

<!-- Generated by `aiaas export-reference --output docs/reference.md` from the shapes the code
declares; a test fails while this page differs, and sends every example through the API. -->

An expectation (`setDatasetExpectations`), a cleaning step (`transformDatasetVersion`) and a
promotion gate (`setModelPromotionGates`) are each an object with a `kind` and the arguments
of that kind. The same rules hold for all three:

- `column` is one column name (text) and `columns` is several (a non-empty list). A kind that
  works on one column takes `column`; a kind that works on a set of columns together (the
  key of `unique`) takes `columns`, even for one column: `["customer_id"]`. No kind takes both.
- A key that the kind does not take is refused, and the error lists the keys it takes.
- An error names each problem in `fieldErrors` by its path, as the API spells it and counting
  from 0: `expectations.2.columns`, `steps.0.column`, `gates.1.aliases`. A problem of the
  object as a whole (neither `min` nor `max`) is named by the object's path, `expectations.2`.

The examples refer to this dataset:
"""
_EXPECTATIONS_INTRO = """\
`setDatasetExpectations(dataset:, expectations:)` declares what a dataset's versions must
satisfy, as a JSON list. `validateDatasetVersion(id:)` checks a version against them in a
background job; a version that was not validated against its dataset's current blocking
expectations, or that failed one, cannot be trained on.
"""
_STEPS_INTRO = """\
`transformDatasetVersion(input: {version:, steps:})` cleans a version into a new version of
the same dataset, running the steps in order. Every step is checked before any runs. GraphQL
takes `kind` and `strategy` as enums, in capitals as in the examples (`MEDIAN`); the new
version's `transformation` records the steps with them in lowercase (`median`).
"""
_GATES_INTRO = """\
`setModelPromotionGates(model:, gates:)` sets the checks a model version must pass before
`setModelAlias` moves an alias to it, as a JSON list. A gate guards the aliases it lists in
`aliases`; one that lists none guards the default below. Moving an alias that no gate guards
checks nothing.
"""


def render_reference() -> str:
    shapes = builtin_shapes()
    expectations, steps, gates = shapes[EXPECTATIONS], shapes[STEPS], shapes[GATES]
    lines = [
        *_INTRO.splitlines(),
        "",
        "```csv",
        *EXAMPLE_CSV.splitlines(),
        "```",
        "",
        f"## {EXPECTATIONS}",
        "",
        *_EXPECTATIONS_INTRO.splitlines(),
        "",
        f"Kinds: {_kinds(expectations)}.",
        "",
        *_common_section("expectation", EXPECTATION_ARGUMENTS, expectations),
        *(line for shape in expectations for line in _kind_section(shape, shape.example)),
        f"## {STEPS}",
        "",
        *_STEPS_INTRO.splitlines(),
        "",
        f"Kinds: {_kinds(steps)}.",
        "",
        *(
            line
            for shape in steps
            for line in _kind_section(shape, graphql_step(shape.example), _ENUM_ARGUMENTS)
        ),
        "### The expression language",
        "",
        "`filter_rows` and the expectation `rule` take an expression over the columns:",
        "",
        "```text",
        *_grammar(),
        "```",
        "",
        f"## {GATES}",
        "",
        *_GATES_INTRO.splitlines(),
        "",
        f"Kinds: {_kinds(gates)}.",
        "",
        *_common_section("gate", GATE_ARGUMENTS, gates),
        *(line for shape in gates for line in _kind_section(shape, shape.example)),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
