"""Pydantic models of GraphQL selections, and typed dicts of input objects, as source text:
the part of `regenerate` that reads the schema's types.

Nested objects become nested models named by their path (`CreateProjectMutationCreateProject`
...). An abstract field (a union or an interface) must select `__typename`: it becomes a union
told apart by it (`base_model.by_typename`), with one model per type that a fragment names and
one, `...Other`, for the remaining types, with the fields common to all.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from graphql.pyutils import Undefined

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    SelectionSetNode,
)

_SCALARS = {
    "ID": "str",
    "String": "str",
    "Int": "int",
    "Float": "float",
    "Boolean": "bool",
    "DateTime": "datetime",
    "Date": "date",
    "JSON": "Any",
}


OTHER = "Other"
"""The tag of the model of the types no fragment names."""


class GenerationError(Exception):
    """An operation document the generator cannot turn into code, and why."""


def snake(name: str) -> str:
    """`fieldErrors` -> `field_errors`; `__typename` -> `typename__`, as pydantic allows."""
    if name == "__typename":
        return "typename__"
    words = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    words = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", words).lower()
    return f"{words}_" if keyword.iskeyword(words) else words


def pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


@dataclass
class Output:
    enums: set[str] = field(default_factory=set)
    inputs: dict[str, str] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)


class Generator:
    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode]):
        self.schema = schema
        self.fragments = fragments
        self.out = Output()

    # Selections -----------------------------------------------------------------------------

    def _fields_for(
        self, type_: GraphQLNamedType, selection_set: SelectionSetNode
    ) -> dict[str, list[FieldNode]]:
        """The fields a concrete or abstract `type_` answers for a selection, by response key,
        fragments applying to it expanded."""
        fields: dict[str, list[FieldNode]] = {}
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                fields.setdefault(key, []).append(selection)
                continue
            if isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                condition, inner = fragment.type_condition.name.value, fragment.selection_set
            elif isinstance(selection, InlineFragmentNode):
                assert selection.type_condition is not None, "inline fragments name their type"
                condition, inner = selection.type_condition.name.value, selection.selection_set
            else:  # pragma: no cover - graphql-core has no other selection
                raise GenerationError(f"unexpected selection {selection!r}")
            if self._applies(condition, type_):
                for key, nodes in self._fields_for(type_, inner).items():
                    fields.setdefault(key, []).extend(nodes)
        return fields

    def _fragment_types(
        self, type_: GraphQLInterfaceType | GraphQLUnionType, selection_set: SelectionSetNode
    ) -> set[str]:
        """The possible types of `type_` that a fragment of the selection names, itself or
        through an interface."""
        named: set[str] = set()
        possible = self.schema.get_possible_types(type_)
        for selection in selection_set.selections:
            if isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                condition, inner = fragment.type_condition.name.value, fragment.selection_set
            elif isinstance(selection, InlineFragmentNode) and selection.type_condition:
                condition, inner = selection.type_condition.name.value, selection.selection_set
            else:
                continue
            if condition != type_.name:
                named |= {t.name for t in possible if self._applies(condition, t)}
            named |= self._fragment_types(type_, inner)
        return named

    def _applies(self, condition: str, type_: GraphQLNamedType) -> bool:
        """Whether a fragment on `condition` selects on every object of `type_`."""
        if condition == type_.name:
            return True
        target = self.schema.get_type(condition)
        if isinstance(type_, GraphQLObjectType) and isinstance(
            target, GraphQLInterfaceType | GraphQLUnionType
        ):
            return self.schema.is_sub_type(target, type_)
        return False

    # Models ---------------------------------------------------------------------------------

    def model(
        self,
        class_name: str,
        type_: GraphQLObjectType | GraphQLInterfaceType | GraphQLUnionType,
        selection_set: SelectionSetNode,
        typename: str | None = None,
    ) -> None:
        """Append a model of `selection_set` on `type_` (and its nested models) to the output."""
        lines = [f"class {class_name}(GraphQLModel):"]
        for key, nodes in self._fields_for(type_, selection_set).items():
            name = nodes[0].name.value
            python_name = snake(key)
            if name == "__typename":
                literal = typename or type_.name
                kind = "str" if literal == OTHER else f'Literal["{literal}"]'
                lines.append(f'    typename__: {kind} = Field(alias="__typename")')
                continue
            definition = getattr(type_, "fields", {}).get(name)
            if definition is None:
                raise GenerationError(f"{type_.name} has no field {name}")
            sub_selections = [node.selection_set for node in nodes if node.selection_set]
            annotation = self._annotation(
                class_name + pascal(key), definition.type, sub_selections, key
            )
            alias = "" if python_name == key else f'alias="{key}"'
            default = f" = Field({alias})" if alias else ""
            lines.append(f"    {python_name}: {annotation}{default}")
        if len(lines) == 1:
            lines.append("    pass")
        self.out.models.append("\n".join(lines))

    def _annotation(
        self,
        nested_name: str,
        type_: GraphQLOutputType,
        selections: list[SelectionSetNode],
        key: str,
    ) -> str:
        nullable = " | None"
        if isinstance(type_, GraphQLNonNull):
            inner = self._annotation(nested_name, type_.of_type, selections, key)
            return inner.removesuffix(nullable)
        if isinstance(type_, GraphQLList):
            inner = self._annotation(nested_name, type_.of_type, selections, key)
            return f"list[{inner}]{nullable}"
        return self._named(nested_name, type_, selections, key) + nullable

    def _named(
        self,
        nested_name: str,
        type_: GraphQLNamedType,
        selections: list[SelectionSetNode],
        key: str,
    ) -> str:
        if isinstance(type_, GraphQLScalarType):
            if type_.name not in _SCALARS:
                raise GenerationError(f"no Python type for scalar {type_.name}")
            return _SCALARS[type_.name]
        if isinstance(type_, GraphQLEnumType):
            self.out.enums.add(type_.name)
            return type_.name
        merged = SelectionSetNode(selections=tuple(s for sel in selections for s in sel.selections))
        if isinstance(type_, GraphQLObjectType):
            self.model(nested_name, type_, merged)
            return nested_name
        assert isinstance(type_, GraphQLInterfaceType | GraphQLUnionType)
        if "__typename" not in self._fields_for(type_, merged):
            raise GenerationError(f"{nested_name}: select __typename on the abstract field {key}")
        named = self._fragment_types(type_, merged)
        tagged = []
        for possible in sorted(self.schema.get_possible_types(type_), key=lambda t: t.name):
            if possible.name in named:
                variant = nested_name + possible.name
                self.model(variant, possible, merged, typename=possible.name)
                tagged.append(f'Annotated[{variant}, Tag("{possible.name}")]')
        if len(named) < len(self.schema.get_possible_types(type_)):
            # One model for every type no fragment names, with the fields common to all: so
            # that a type the schema adds later is read, and leaves this code as it is.
            variant = nested_name + "Other"
            self.model(variant, type_, merged, typename=OTHER)
            tagged.append(f'Annotated[{variant}, Tag("{OTHER}")]')
        names = ", ".join(f'"{name}"' for name in sorted(named))
        return f"Annotated[{' | '.join(tagged)}, by_typename({names})]"

    # Inputs ---------------------------------------------------------------------------------

    def input_annotation(self, type_: GraphQLInputType) -> str:
        if isinstance(type_, GraphQLNonNull):
            return self.input_annotation(type_.of_type).removesuffix(" | None")
        if isinstance(type_, GraphQLList):
            return f"list[{self.input_annotation(type_.of_type)}] | None"
        if isinstance(type_, GraphQLScalarType):
            return _SCALARS[type_.name] + " | None"
        if isinstance(type_, GraphQLEnumType):
            self.out.enums.add(type_.name)
            return f"{type_.name} | None"
        assert isinstance(type_, GraphQLInputObjectType)
        self._input_class(type_)
        return f"{type_.name} | None"

    def _input_class(self, type_: GraphQLInputObjectType) -> None:
        if type_.name in self.out.inputs:
            return
        self.out.inputs[type_.name] = ""  # placeholder against recursion
        lines = [f"class {type_.name}(TypedDict, total=False):"]
        if type_.description:
            lines.append(f"    {docstring(type_.description)}")
        for name, definition in type_.fields.items():
            annotation = self.input_annotation(definition.type)
            # graphql-core 3.3 keeps a default of the SDL in `default`, 3.2 in `default_value`.
            defaults = (getattr(definition, "default", None), definition.default_value)
            required = isinstance(definition.type, GraphQLNonNull) and all(
                default is None or default is Undefined for default in defaults
            )
            lines.append(f"    {name}: {f'Required[{annotation}]' if required else annotation}")
        self.out.inputs[type_.name] = "\n".join(lines)


def docstring(text: str) -> str:
    single = " ".join(text.split()).replace('"""', "'''").replace("\\", "\\\\")
    return f'"""{single}"""'
