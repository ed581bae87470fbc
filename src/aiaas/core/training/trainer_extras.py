"""Trainers that aiaas's extras provide, so that a submission naming one of them where its extra
is not installed is told what to install, rather than only that the name is unknown.

Only the extras of this project are listed: a third-party plugin's trainers are unknown until
it is installed, and nothing here names them.
"""

from __future__ import annotations

from collections.abc import Mapping

TRAINER_EXTRAS: Mapping[str, str] = dict.fromkeys(
    (
        "hist-gradient-boosting-classifier",
        "hist-gradient-boosting-regressor",
        "logistic-regression",
        "random-forest-classifier",
        "random-forest-regressor",
        "xgboost-classifier",
        "xgboost-regressor",
        "lightgbm-classifier",
        "lightgbm-regressor",
    ),
    "trees",
)
"""Trainer name → the extra (`pip install 'aiaas[<extra>]'`) whose plugin registers it."""


def unknown_trainer_problem(name: str, known: list[str]) -> str:
    """What to tell a user who named a trainer that no installed plugin registers."""
    problem = f"unknown trainer {name!r}; known: {', '.join(known)}"
    extra = TRAINER_EXTRAS.get(name)
    if extra is not None:
        # The package is named by its path in aiaas's repository, not by an index name: until
        # the name is published and held by this project, telling operators to install it from
        # an index would send them to whoever registers the name first.
        problem += (
            f". {name!r} comes with the {extra!r} extra, which is not installed here: install "
            f"the aiaas-{extra} package (plugins-extra/aiaas-{extra} in aiaas's repository) on "
            "the API and the workers"
        )
    return problem
