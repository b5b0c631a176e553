"""A label store: texts to label, what the model said, and what people answered.

A SQLite file by default (embedded, nothing to start), or PostgreSQL by URL for a team
(`postgresql://user:pass@host/db`; `pip install 'sentitune[labels]'` brings the driver).
A store belongs to one task: its label names and task are written when it is created, and
a store of another task is refused. Writes are transactions: a label is committed before
the answer leaves, so a server killed with -9 loses no committed label. One annotation per
(text, annotator): submitting the same text again replaces that annotator's answer (a
repeated submit is a no-op), and different annotators never touch each other's rows.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentitune.errors import SentituneError


def _schema():
    """The tables: schema.py needs SQLAlchemy (the `labels` extra), so it is imported on
    first use and `is_store` and friends work without it."""
    import sentitune.labelstore.schema as schema

    return schema


TASKS = ("binary", "multiclass", "multilabel")
MAX_ANNOTATOR_CHARS = 200


def text_hash(text: str) -> str:
    """The identity of a text in a store: SHA-256 of its NFC form without outer spaces."""
    return hashlib.sha256(unicodedata.normalize("NFC", text).strip().encode()).hexdigest()


def store_url(store: str | Path) -> str:
    """A database URL for a store given as a URL or as a SQLite file path."""
    text = str(store)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def is_store(source: str) -> bool:
    """Whether a data source names a label store rather than a data file."""
    return "://" in source or Path(source).suffix.lower() in (".db", ".sqlite", ".sqlite3")


def shown_url(url: str) -> str:
    """A store URL fit for messages and logs: without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # no SQLAlchemy, or not a URL it understands: shown as given
        return url


def _engine(url: str):
    try:
        from sqlalchemy import create_engine, event
    except ImportError:
        raise SentituneError("label stores need SQLAlchemy: pip install 'sentitune[labels]'"
                             ) from None
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(connection, _record) -> None:
                cursor = connection.cursor()
                # WAL: annotators read while another writes; FULL: a commit is on disk.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()

            return engine
        if url.startswith("postgresql://"):  # psycopg 3, not SQLAlchemy's psycopg2 default
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        raise SentituneError(f"the database driver for {shown_url(url)} is missing ({exc.name}"
                             "); pip install 'sentitune[labels]'") from None
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends: a bad URL
        raise SentituneError(f"not a database URL or file: {shown_url(url)} ({exc}); give a "
                             "SQLite file such as labels.db or postgresql://...") from None


class UnknownItem(SentituneError):
    """An item id the store does not hold."""


@dataclass(frozen=True)
class Added:
    """What `LabelStore.add` did."""

    added: int
    already: int  # texts the store held already (by hash)
    empty: int  # records without text, left out


def _now() -> datetime:
    return datetime.now(UTC)


class LabelStore:
    """One label store (see the module docstring); open it with `LabelStore.open`."""

    def __init__(self, engine, url: str, labels: list[str], task: str) -> None:
        self.engine = engine
        self.url = url
        self.labels = labels
        self.task = task

    # ------------------------------------------------------------- opening

    @classmethod
    def open(cls, store: str | Path, *, labels: Sequence[str] | None = None,
             task: str | None = None) -> LabelStore:
        """Open a store, creating it when new (then `labels` and `task` are needed). Given
        `labels` must match an existing store's: a store of another task is refused."""
        url = store_url(store)
        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).parent.is_dir():
            raise SentituneError(f"no folder for the label store {url[len('sqlite:///'):]}; "
                                 "create it first")
        engine = _engine(url)  # first: without SQLAlchemy, one line saying what to install
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import inspect

        schema = _schema()

        where = shown_url(url)
        try:
            tables = set(inspect(engine).get_table_names())
            if schema.meta.name not in tables:  # other tables of a shared database stay
                if labels is None or task is None:
                    raise SentituneError(
                        f"{where} is not a label store yet; create it by adding texts with "
                        "the run that will label them (`sentitune labels add STORE --from "
                        "FILE --run RUN`) or name the labels (--labels a,b)")
                cls._create(engine, list(labels), task)
            found = cls._read_meta(engine, where)
        except sa_exc.OperationalError as exc:
            raise SentituneError(f"cannot open the label store {where}: "
                                 f"{str(exc.orig).strip().splitlines()[0]}") from None
        stored_labels, stored_task = found
        if labels is not None and (list(labels) != stored_labels
                                   or (task is not None and task != stored_task)):
            raise SentituneError(
                f"{where} is a label store of another task ({stored_task}: "
                f"{', '.join(stored_labels)}), not {task or stored_task}: "
                f"{', '.join(labels)}; use a store of this task or a new one")
        return cls(engine, url, stored_labels, stored_task)

    @staticmethod
    def _create(engine, labels: list[str], task: str) -> None:
        from sqlalchemy import exc as sa_exc

        schema = _schema()

        if task not in TASKS:
            raise SentituneError(f"task must be one of {', '.join(TASKS)}, not '{task}'")
        if len(labels) < (1 if task == "multilabel" else 2) or len(set(labels)) != len(labels):
            raise SentituneError(f"a {task} label store needs distinct label names; got "
                                 f"{', '.join(labels) or 'none'}")
        schema.metadata.create_all(engine)  # checkfirst: a racing creator is harmless
        rows = [{"key": "schema_version", "value": str(schema.SCHEMA_VERSION)},
                {"key": "labels", "value": json.dumps(labels)},
                {"key": "task", "value": task},
                {"key": "created_at", "value": _now().isoformat()}]
        try:
            with engine.begin() as connection:
                connection.execute(schema.meta.insert(), rows)
        except sa_exc.IntegrityError:
            pass  # another process created it first; its meta is checked like any store's

    @staticmethod
    def _read_meta(engine, where: str) -> tuple[list[str], str]:
        from sqlalchemy import select

        schema = _schema()

        with engine.connect() as connection:
            found = {row.key: row.value for row in connection.execute(
                select(schema.meta.c.key, schema.meta.c.value))}
        version = found.get("schema_version")
        if version != str(schema.SCHEMA_VERSION):
            raise SentituneError(
                f"{where} is a label store of schema version {version}, and this sentitune "
                f"reads version {schema.SCHEMA_VERSION}; use the sentitune that wrote it")
        return json.loads(found["labels"]), found["task"]

    # ------------------------------------------------------------- texts in

    def add(self, records: Iterable[dict[str, Any]], *, source: str,
            run: str | None = None) -> Added:
        """Add texts to label, each a dict with `text` and optionally the model's answer
        (`label` or `labels`, `score`, `probabilities`, `run`). A text already in the store
        (by hash) is left as it is."""
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import select

        schema = _schema()

        rows, empty = {}, 0
        for record in records:
            text = record.get("text")
            if not isinstance(text, str) or not text.strip():
                empty += 1
                continue
            rows.setdefault(text_hash(text), self._item_row(record, source, run))
        with self.engine.connect() as connection:
            held = set()
            hashes = list(rows)
            for start in range(0, len(hashes), 500):
                held |= set(connection.scalars(select(schema.items.c.text_hash).where(
                    schema.items.c.text_hash.in_(hashes[start:start + 500]))))
        new = [row | {"text_hash": h} for h, row in rows.items() if h not in held]
        added = 0
        if new:
            try:
                with self.engine.begin() as connection:
                    connection.execute(schema.items.insert(), new)
                added = len(new)
            except sa_exc.IntegrityError:  # another writer added some meanwhile: one by one
                for row in new:
                    try:
                        with self.engine.begin() as connection:
                            connection.execute(schema.items.insert(), [row])
                        added += 1
                    except sa_exc.IntegrityError:
                        pass
        return Added(added, len(rows) - added, empty)

    def _item_row(self, record: dict[str, Any], source: str, run: str | None) -> dict:
        answer = record.get("labels", record.get("label"))
        probabilities = record.get("probabilities")
        score = record.get("score")
        return {"text": record["text"].strip(), "source": source[:300], "added_at": _now(),
                "model_run": (record.get("run") or run or None) if answer is not None
                else None,
                "model_answer": None if answer is None else json.dumps(answer),
                "model_score": None if score is None else float(score),
                "model_probabilities": None if probabilities is None
                else json.dumps(probabilities)}

    def hashes(self) -> set[str]:
        from sqlalchemy import select

        schema = _schema()

        with self.engine.connect() as connection:
            return set(connection.scalars(select(schema.items.c.text_hash)))

    # ------------------------------------------------------------- labelling

    def check_labels(self, labels: Sequence[str]) -> list[str]:
        """The labels of one annotation, checked against the store's task."""
        if isinstance(labels, str):
            labels = [labels]
        unknown = [name for name in labels if name not in self.labels]
        if unknown:
            raise SentituneError(f"unknown label {unknown[0]!r}; this store's labels are "
                                 f"{', '.join(self.labels)}")
        if self.task != "multilabel" and len(labels) != 1:
            raise SentituneError(f"a {self.task} store takes exactly one label per text, "
                                 f"got {len(labels)}")
        return sorted(set(labels), key=self.labels.index)

    @staticmethod
    def check_annotator(annotator: str) -> str:
        annotator = (annotator or "").strip()
        if not annotator or len(annotator) > MAX_ANNOTATOR_CHARS:
            raise SentituneError(f"give an annotator name of 1 to {MAX_ANNOTATOR_CHARS} "
                                 "characters")
        return annotator

    def submit(self, item_id: int, annotator: str, labels: Sequence[str] | None) -> dict:
        """Record `annotator`'s label(s) for an item (None: a skip), replacing their earlier
        answer for it; committed when this returns. The same submit twice is a no-op."""
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import select

        schema = _schema()

        annotator = self.check_annotator(annotator)
        chosen = None if labels is None else json.dumps(self.check_labels(labels))
        values = {"labels": chosen, "skipped": labels is None, "created_at": _now()}
        table = schema.annotations
        for _ in range(3):  # a concurrent first submit of the same pair: retried as update
            try:
                with self.engine.begin() as connection:
                    if connection.scalar(select(schema.items.c.id).where(
                            schema.items.c.id == item_id)) is None:
                        raise UnknownItem(f"no text {item_id} in this label store")
                    current = connection.execute(select(table.c.id, table.c.labels,
                                                        table.c.skipped).where(
                        table.c.item_id == item_id, table.c.annotator == annotator)).first()
                    if current is None:
                        connection.execute(table.insert().values(
                            item_id=item_id, annotator=annotator, **values))
                    elif (current.labels, current.skipped) != (chosen, labels is None):
                        connection.execute(table.update().where(table.c.id == current.id)
                                           .values(**values))
                return {"item_id": item_id, "annotator": annotator,
                        "labels": None if chosen is None else json.loads(chosen),
                        "skipped": labels is None}
            except sa_exc.IntegrityError:
                continue
        raise SentituneError("the label could not be saved: the store stayed busy; retry")

    def undo(self, annotator: str) -> int | None:
        """Delete `annotator`'s latest annotation (label or skip); its item id, or None."""
        from sqlalchemy import delete, select

        schema = _schema()

        annotator = self.check_annotator(annotator)
        table = schema.annotations
        with self.engine.begin() as connection:
            latest = connection.execute(
                select(table.c.id, table.c.item_id).where(table.c.annotator == annotator)
                .order_by(table.c.created_at.desc(), table.c.id.desc()).limit(1)).first()
            if latest is None:
                return None
            connection.execute(delete(table).where(table.c.id == latest.id))
            return int(latest.item_id)

    def next_item(self, annotator: str, item: int | None = None) -> dict | None:
        """The next text `annotator` has not answered: the model's least sure first (texts
        without a model answer last, then in the order added); `item` first when given
        (the text an undo brought back)."""
        from sqlalchemy import and_, select

        schema = _schema()

        annotator = self.check_annotator(annotator)
        items, table = schema.items, schema.annotations
        answered = select(table.c.id).where(and_(table.c.item_id == items.c.id,
                                                 table.c.annotator == annotator)).exists()
        query = select(items).where(~answered)
        if item is not None:
            query = query.where(items.c.id == item)
        else:
            query = query.order_by(items.c.model_score.is_(None), items.c.model_score,
                                   items.c.id)
        with self.engine.connect() as connection:
            row = connection.execute(query.limit(1)).first()
        return None if row is None else self._item(row._mapping)

    @staticmethod
    def _item(row) -> dict:
        answer = row["model_answer"]
        return {"id": int(row["id"]), "text": row["text"], "text_hash": row["text_hash"],
                "source": row["source"], "model_run": row["model_run"],
                "model_answer": None if answer is None else json.loads(answer),
                "model_score": row["model_score"],
                "model_probabilities": None if row["model_probabilities"] is None
                else json.loads(row["model_probabilities"])}

    def progress(self, annotator: str) -> dict[str, int]:
        from sqlalchemy import func, select

        schema = _schema()

        table = schema.annotations
        with self.engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(schema.items))
            done = connection.scalar(select(func.count()).select_from(table).where(
                table.c.annotator == annotator))
        return {"texts": int(total), "answered": int(done)}

    # ------------------------------------------------------------- reading out

    def annotations(self) -> list[dict]:
        """Every annotation with its text and model answer, oldest first."""
        from sqlalchemy import select

        schema = _schema()

        items, table = schema.items, schema.annotations
        query = (select(table.c.item_id, table.c.annotator, table.c.labels, table.c.skipped,
                        table.c.created_at, items.c.text, items.c.text_hash,
                        items.c.model_run, items.c.model_answer, items.c.model_score)
                 .join(items, items.c.id == table.c.item_id)
                 .order_by(table.c.created_at, table.c.id))
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [{**row, "labels": None if row["labels"] is None else json.loads(row["labels"]),
                 "model_answer": None if row["model_answer"] is None
                 else json.loads(row["model_answer"])} for row in rows]

    def item_count(self) -> int:
        from sqlalchemy import func, select

        schema = _schema()

        with self.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(schema.items)))

    def close(self) -> None:
        self.engine.dispose()
