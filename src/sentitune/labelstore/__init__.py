"""The label store: what people answered about the texts the model doubted.

`LabelStore` (store.py) keeps texts, model answers and annotations in SQLite or
PostgreSQL; intake.py reads texts in from files, export.py writes consensus labels out,
agreement.py measures how far annotators agree. Needs the `labels` extra.
"""

from sentitune.labelstore.store import LabelStore, is_store, store_url, text_hash

__all__ = ["LabelStore", "is_store", "store_url", "text_hash"]
