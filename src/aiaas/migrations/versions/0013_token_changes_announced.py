"""A change to an API token (revoked, its expiry changed, deleted) is announced on the
`aiaas_policy` channel, as a change of a user's admin flag or disabled state already is (0002).

Each process keeps the tokens it has verified in memory (`aiaas.plugins.token_auth.cache`) and forgets
them all on any announcement on that channel, so that a revocation committed anywhere, by any
process or by hand in SQL, ends the token in every process as soon as the notice arrives. The
payload is the table's name: the policy enforcer ignores `api_tokens`, which holds none of its
rules. Tokens being made (INSERT) need no notice: nothing has remembered them yet; nor does a change of
a column that verifying a token does not read (`last_used_at`, were it ever kept up to date on
each request, would otherwise empty every cache on every request).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = [
    """
CREATE TRIGGER api_tokens_credentials_change
    AFTER UPDATE OF revoked_at, expires_at, user_id, prefix, token_hash OR DELETE OR TRUNCATE
    ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION aiaas_notify_policy_change()
""",
]

DOWNGRADE = ["DROP TRIGGER api_tokens_credentials_change ON api_tokens"]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
