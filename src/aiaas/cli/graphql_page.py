"""docs/graphql.md (`aiaas export-graphql-reference`): the GraphQL API, type by type, rendered
from the schema the server serves, so that the documentation site's reference is the schema.

Every operation root (queries, mutations, subscriptions) comes first, each field with its
arguments, then the named types, grouped by kind and sorted by name. Each type name links to its
section. A test fails while the committed page differs from what this renders.
"""

from __future__ import annotations

from collections.abc import Iterable

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLType,
    GraphQLUnionType,
    build_schema,
    get_named_type,
    print_ast,
)

INTRODUCTION = """\
# GraphQL API

One endpoint, `/graphql`, takes every query and mutation (HTTP POST, JSON or multipart for
uploads) and every subscription (WebSocket, the `graphql-transport-ws` protocol). Every request
carries an API token: `Authorization: Bearer <token>` (over WebSocket, `{"authorization": ...}` in
the `connection_init` payload). A mutation answers a union of its success type and the errors it
can meet (`InvalidInputError`, `NotFoundError`, `ConflictError`, ...): select `__typename` and
each member you handle. [Errors](errors.md) lists every code, [Access control](access-control.md)
the role each field needs.

This page is generated from the schema (`aiaas export-graphql-reference`); `schema.graphql` in the
repository is the same schema as SDL.
"""

_BUILT_IN_SCALARS = frozenset({"String", "Int", "Float", "Boolean", "ID"})


def _text(description: str | None) -> str:
    """A description fit for one table cell: one line, its pipes escaped."""
    if not description:
        return ""
    return " ".join(description.split()).replace("|", "\\|")


def _anchor(name: str) -> str:
    return name.lower()


def _type_reference(type_: GraphQLType) -> str:
    """`[Job!]!` with `Job` linked to its section, unless it is a built-in scalar."""
    text = str(type_)
    name = get_named_type(type_).name
    if name in _BUILT_IN_SCALARS:
        return f"`{text}`"
    before, _, after = text.partition(name)
    return f"{before}[`{name}`](#{_anchor(name)}){after}".replace("[[", "\\[[")


def _arguments_table(arguments: dict[str, GraphQLArgument]) -> list[str]:
    if not arguments:
        return []
    lines = ["| Argument | Type | Default | Description |", "|---|---|---|---|"]
    for name, argument in arguments.items():
        default = (
            ""
            if argument.ast_node is None or argument.ast_node.default_value is None
            else (f"`{_printed_value(argument)}`")
        )
        lines.append(
            f"| `{name}` | {_type_reference(argument.type)} | {default} | "
            f"{_text(argument.description)} |"
        )
    return [*lines, ""]


def _printed_value(argument: GraphQLArgument | GraphQLInputField) -> str:
    node = argument.ast_node
    assert node is not None
    assert node.default_value is not None
    return print_ast(node.default_value)


def _operation(root: str, name: str, field: GraphQLField) -> list[str]:
    # An explicit id, since a field and a type may share a name (`node`, `Node`) and the
    # type's section must keep the plain anchor that every type link points at.
    lines = [f"### {name} {{ #{root.lower()}-{name.lower()} }}", ""]
    arguments = ", ".join(f"{arg}: {spec.type}" for arg, spec in field.args.items())
    lines += [
        "```graphql",
        f"{name}{f'({arguments})' if arguments else ''}: {field.type}",
        "```",
        "",
    ]
    if field.description:
        lines += [field.description.strip(), ""]
    if field.deprecation_reason:
        lines += [f"*Deprecated:* {field.deprecation_reason}", ""]
    lines += _arguments_table(field.args)
    lines.append(f"Answers {_type_reference(field.type)}.")
    return [*lines, ""]


def _fields_table(fields: dict[str, GraphQLField] | dict[str, GraphQLInputField]) -> list[str]:
    lines = ["| Field | Type | Description |", "|---|---|---|"]
    for name, field in fields.items():
        arguments = getattr(field, "args", None)
        shown = f"{name}({', '.join(arguments)})" if arguments else name
        note = _text(field.description)
        if isinstance(field, GraphQLInputField) and field.ast_node is not None:
            default = field.ast_node.default_value
            if default is not None:
                note = f"{note} Default `{print_ast(default)}`.".strip()
        lines.append(f"| `{shown}` | {_type_reference(field.type)} | {note} |")
    return [*lines, ""]


def _named_type(type_: GraphQLNamedType) -> list[str]:
    lines = [f"### {type_.name}", ""]
    if type_.description:
        lines += [type_.description.strip(), ""]
    if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
        if type_.interfaces:
            names = ", ".join(_type_reference(interface) for interface in type_.interfaces)
            lines += [f"Implements {names}.", ""]
        lines += _fields_table(type_.fields)
    elif isinstance(type_, GraphQLInputObjectType):
        lines += _fields_table(type_.fields)
    elif isinstance(type_, GraphQLUnionType):
        members = ", ".join(_type_reference(member) for member in type_.types)
        lines += [f"One of {members}.", ""]
    elif isinstance(type_, GraphQLEnumType):
        lines += ["| Value | Description |", "|---|---|"]
        lines += [
            f"| `{name}` | {_text(value.description)} |" for name, value in type_.values.items()
        ]
        lines.append("")
    return lines


_KINDS: tuple[tuple[str, type[GraphQLNamedType] | tuple[type[GraphQLNamedType], ...]], ...] = (
    ("Objects", GraphQLObjectType),
    ("Interfaces", GraphQLInterfaceType),
    ("Unions", GraphQLUnionType),
    ("Inputs", GraphQLInputObjectType),
    ("Enums", GraphQLEnumType),
    ("Scalars", GraphQLScalarType),
)


def _types_of_kind(
    schema: GraphQLSchema, kind: object, roots: set[str]
) -> Iterable[GraphQLNamedType]:
    for name in sorted(schema.type_map):
        type_ = schema.type_map[name]
        if name.startswith("__") or name in roots or name in _BUILT_IN_SCALARS:
            continue
        if isinstance(type_, kind):  # type: ignore[arg-type]
            yield type_


def render_graphql_reference(sdl: str) -> str:
    """The page for the schema that `sdl` describes."""
    schema = build_schema(sdl)
    lines = [INTRODUCTION]
    roots = (
        ("Queries", schema.query_type),
        ("Mutations", schema.mutation_type),
        ("Subscriptions", schema.subscription_type),
    )
    root_names: set[str] = set()
    for title, root in roots:
        if root is None:
            continue
        root_names.add(root.name)
        lines += [f"## {title}", ""]
        for name in sorted(root.fields):
            lines += _operation(root.name, name, root.fields[name])
    for title, kind in _KINDS:
        lines += [f"## {title}", ""]
        for type_ in _types_of_kind(schema, kind, root_names):
            lines += _named_type(type_)
    return "\n".join(lines).rstrip("\n") + "\n"
