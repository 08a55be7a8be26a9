"""Import problems from JSONL, Parquet or a local Hugging Face `datasets` directory."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curator.bank.ingest import ProblemRecord
from curator.core.errors import Invalid


@dataclass
class FieldMap:
    """Which source columns hold the problem's parts; other columns become metadata."""

    external_id: str | None = "id"  # None: every row gets row-N (its position)
    prompt: str = "prompt"
    answer: str | None = "answer"
    embedding: str | None = "embedding"
    metadata: list[str] | None = None  # None: every other column
    exclude: set[str] = field(default_factory=set)

    def record(self, row: dict[str, Any], index: int) -> ProblemRecord:
        used = {self.external_id, self.prompt, self.answer, self.embedding, "metadata"}
        used |= self.exclude
        # the client's `add_dataset` rule (tests/test_dataset_contract.py): a named
        # field a row lacks, or an empty prompt, is an error naming the row
        ext = None
        if self.external_id is not None:
            ext = lookup(row, self.external_id)
            if ext is None:
                raise RowError(index, self.external_id, row, "has no id field")
        prompt = lookup(row, self.prompt)
        if prompt is None or prompt == "" or prompt == []:
            raise RowError(index, self.prompt, row, "has no prompt in field")
        meta_keys = self.metadata if self.metadata is not None else [
            k for k in row if k not in used]
        # A `metadata` object column (our own export format) is merged, not nested.
        nested = row.get("metadata")
        meta = dict(nested) if isinstance(nested, dict) and self.metadata is None else {}
        meta.update({k: _clean(row[k]) for k in meta_keys if k in row and _jsonable(row[k])})
        emb = lookup(row, self.embedding) if self.embedding else None
        answer = lookup(row, self.answer) if self.answer else None
        return ProblemRecord(
            external_id=str(ext) if ext is not None else f"row-{index}",
            prompt=_prompt_text(prompt),
            answer=None if answer is None else str(answer),
            metadata=meta,
            embedding=None if emb is None else (
                emb if isinstance(emb, np.ndarray) else [float(x) for x in emb]),
        )


class ImportFileError(Invalid):
    """A file the importer cannot read as rows (format, or a malformed line)."""


class RowError(Invalid):
    """A dataset row that cannot become a problem; names the row and the field."""

    def __init__(self, index: int, field_name: str, row: dict[str, Any], what: str) -> None:
        super().__init__(f"row {index + 1} {what} {field_name!r} (its columns: "
                         f"{', '.join(sorted(map(str, row))[:20])})",
                         {"row": index + 1, "field": field_name})


def lookup(row: dict[str, Any], path: str) -> Any:
    """`row[path]`, or a dotted path into nested columns ("extra_info.index"); None if
    absent. A column literally named with dots wins."""
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _prompt_text(prompt: Any) -> str:
    """Chat messages ([{role, content}, ...], verl's and TRL's format) become their
    contents joined by newlines; other non-strings are stored as JSON."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(
            isinstance(m, dict) and "content" in m for m in prompt):
        return "\n".join(str(m["content"]) for m in prompt)
    return json.dumps(prompt)


def _clean(value: Any) -> Any:
    """Missing values in columnar files arrive as NaN: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def count_rows(path: Path) -> int | None:
    if path.suffix == ".jsonl":
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


def _arrow_rows(rb, embedding_field: str | None) -> list[dict[str, Any]]:
    """Rows of a record batch; a list-typed embedding column becomes numpy rows without
    a detour through Python floats (the slow part of importing a million vectors)."""
    import pyarrow as pa

    names = rb.schema.names
    if not embedding_field or embedding_field not in names:
        return rb.to_pylist()
    col = rb.column(embedding_field)
    vectors = None
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
        offsets = None if pa.types.is_fixed_size_list(col.type) else np.asarray(col.offsets)
        if col.null_count == 0 and (offsets is None or len(set(np.diff(offsets))) <= 1):
            flat = np.asarray(col.flatten(), dtype=np.float32)
            vectors = flat.reshape(len(rb), -1) if len(rb) else flat.reshape(0, 0)
    if vectors is None:
        return rb.to_pylist()
    rows = rb.drop_columns([embedding_field]).to_pylist()
    for row, vec in zip(rows, vectors):
        row[embedding_field] = vec
    return rows


def read_rows(path: Path, batch_size: int = 5000,
              embedding_field: str | None = "embedding") -> Iterator[list[dict[str, Any]]]:
    """Yield batches of row dicts; never holds the whole file in memory."""
    if path.is_dir():
        yield from _read_hf_dataset(path, batch_size)
    elif path.suffix in (".jsonl", ".json"):
        batch: list[dict[str, Any]] = []
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ImportFileError(f"{path.name} line {number}: not JSON "
                                              f"({exc.msg} at column {exc.colno})") from None
                    if not isinstance(row, dict):
                        raise ImportFileError(f"{path.name} line {number}: a row must be a "
                                              "JSON object")
                    batch.append(row)
                    if len(batch) >= batch_size:
                        yield batch
                        batch = []
        if batch:
            yield batch
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
            yield _arrow_rows(rb, embedding_field)
    else:
        raise ImportFileError(f"cannot read {path.name}: use a .jsonl or .parquet file or a "
                              "saved `datasets` directory")


def _read_hf_dataset(path: Path, batch_size: int) -> Iterator[list[dict[str, Any]]]:
    try:
        from datasets import load_from_disk
    except ImportError as exc:
        raise ValueError("reading a datasets directory needs `pip install datasets`") from exc
    ds = load_from_disk(str(path))
    if hasattr(ds, "keys"):  # a DatasetDict: take the train split, else the first
        ds = ds["train"] if "train" in ds else ds[next(iter(ds.keys()))]
    for start in range(0, len(ds), batch_size):
        yield _columns_to_rows(ds[start:start + batch_size])


def _columns_to_rows(cols: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(cols)
    return [dict(zip(keys, vals)) for vals in zip(*(cols[k] for k in keys))]


def records(rows: Iterable[dict[str, Any]], fields: FieldMap, offset: int) -> list[ProblemRecord]:
    return [fields.record(r, offset + i) for i, r in enumerate(rows)]
