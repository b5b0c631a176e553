"""The label store's tables (SQLAlchemy Core), versioned by a row of `sentitune_meta`.

    sentitune_meta         key -> value: schema_version, labels (JSON list), task, created_at
    sentitune_items        one row per distinct text (by its SHA-256), with where it came
                           from and what a model said about it (run, answer, score,
                           probabilities), when known
    sentitune_annotations  one row per (item, annotator): the label(s) given, or a skip

The `sentitune_` prefix lets a store live in a team's existing PostgreSQL database beside
other tables. A change to these tables raises SCHEMA_VERSION; a store of another version is
refused rather than misread.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 1

metadata = MetaData()

meta = Table(
    "sentitune_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

items = Table(
    "sentitune_items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("text_hash", String(64), nullable=False, unique=True),
    Column("text", Text, nullable=False),
    Column("source", String(300), nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("model_run", String(300)),
    Column("model_answer", Text),  # JSON: the label, or the list of labels (multi-label)
    Column("model_score", Float),  # the prediction's score: what needs_review is judged on
    Column("model_probabilities", Text),  # JSON: label -> probability
)

annotations = Table(
    "sentitune_annotations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, ForeignKey("sentitune_items.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("annotator", String(200), nullable=False),
    Column("labels", Text),  # JSON list of label names; null for a skip
    Column("skipped", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("item_id", "annotator", name="one_annotation_per_annotator"),
)
