"""Platform metadata (datasets, workflows, runs, models, secrets) in SQLAlchemy + Alembic."""
