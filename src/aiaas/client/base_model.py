"""The base of every generated model of an answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Discriminator


class GraphQLModel(BaseModel):
    """An answer of the API: fields under Python names, read from GraphQL's camelCase
    aliases; fields the server adds later are ignored rather than refused, so that an older
    client keeps working against a newer server."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


def by_typename(*named: str) -> Discriminator:
    """The discriminator of an abstract field's models: the `__typename` of the answer when a
    model of its own was generated for it, "Other" for any other type."""

    def tag(value: Any) -> str:
        if isinstance(value, dict):
            typename = value.get("__typename", value.get("typename__"))
        else:
            typename = getattr(value, "typename__", None)
        return typename if typename in named else "Other"

    return Discriminator(tag)
