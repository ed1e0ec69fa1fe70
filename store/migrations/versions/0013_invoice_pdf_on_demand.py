"""Invoices keep their content; the PDF is drawn from it when first asked for (a download, the e-mail), not
when the monthly job issues the invoice: `invoices.pdf` may be NULL. Drawing a PDF costs more than the rest of
issuing an invoice, and most invoices are never opened.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.alter_column("pdf", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE invoices SET pdf = '' WHERE pdf IS NULL")
    with op.batch_alter_table("invoices") as batch:
        batch.alter_column("pdf", existing_type=sa.LargeBinary(), nullable=False)
