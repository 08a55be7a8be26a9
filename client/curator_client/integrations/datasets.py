"""Build a bank from a dataset over HTTP, keeping the dataset index ↔ problem mapping.

    from curator_client.integrations.datasets import add_dataset

    bank = client.create_bank("gsm8k", embedder="hash")
    added, index_map = add_dataset(client, bank.bank_id, train_dataset,
                                   prompt_field="prompt", answer_field="answer")

`source` may be a Hugging Face `Dataset` / `DatasetDict` (its "train" split), a directory
written by `Dataset.save_to_disk`, a `.parquet` or `.jsonl` file, or any iterable of dicts.
Each row becomes a problem whose `external_id` is `"row-{i}"` (its position), or
`id_format.format(row[id_field])` when `id_field` names a column (dotted paths such as
"extra_info.index" reach into nested columns). The returned `IndexMap` is what the
samplers take to turn selected problems back into dataset indices.

The server-side `curator bank import FILE` reads the same three file kinds with the same
position rule ("row-{i}" when the id column is absent), for banks too large to send.
Needs `datasets` only for datasets directories and `Dataset` objects, `pyarrow` only for
Parquet.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._core import POSITION_FORMAT, IndexMap, get_field

if TYPE_CHECKING:
    from .._client import Client
    from .._models import AddProblemsResult

__all__ = ["add_dataset", "iter_rows", "problem_from_row", "prompt_text"]


def iter_rows(source: Any, *, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Rows of a dataset, file, datasets directory or iterable, in order, as dicts."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            from datasets import load_from_disk

            yield from iter_rows(load_from_disk(str(path)), batch_size=batch_size)
        elif path.suffix in (".jsonl", ".json"):
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
                yield from rb.to_pylist()
        else:
            raise ValueError(f"unsupported file {path}: use .jsonl, .parquet or a datasets dir")
        return
    if isinstance(source, Mapping) and source and all(
            hasattr(v, "column_names") for v in source.values()):
        # a DatasetDict: the train split, else the first one (as `curator bank import`)
        source = source["train"] if "train" in source else next(iter(source.values()))
    if hasattr(source, "column_names") and hasattr(source, "__getitem__"):
        for start in range(0, len(source), batch_size):
            cols = source[start:start + batch_size]
            keys = list(cols)
            for values in zip(*(cols[k] for k in keys)):
                yield dict(zip(keys, values))
        return
    for row in source:
        if not isinstance(row, Mapping):
            raise TypeError(f"a row must be a dict, not {type(row).__name__}")
        yield dict(row)


def prompt_text(prompt: Any) -> str:
    """The text of a prompt: a string as is; chat messages ([{role, content}, ...]) as
    their contents joined by newlines; anything else as JSON."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence) and prompt and all(
            isinstance(m, Mapping) and "content" in m for m in prompt):
        return "\n".join(str(m["content"]) for m in prompt)
    return json.dumps(prompt, default=str)


def _clean(value: Any) -> Any:
    """Missing values in columnar files arrive as NaN: null, as the server's importer."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def problem_from_row(
    row: Mapping[str, Any],
    index: int,
    *,
    prompt_field: str = "prompt",
    id_field: str | None = None,
    id_format: str | None = None,
    answer_field: str | None = "answer",
    metadata_fields: Sequence[str] | None = None,
    embedding_field: str | None = None,
) -> dict[str, Any]:
    """The problem dict (`add_problems` format) for row `index` of a dataset.

    `metadata_fields` None keeps every other top-level JSON-serialisable column as
    metadata (as `curator bank import` does); pass [] for none. Missing answer or
    embedding fields are left out.
    """
    if id_field is None:
        external_id = (id_format or POSITION_FORMAT).format(index)
    else:
        external_id = (id_format or "{}").format(get_field(row, id_field))
    prompt = get_field(row, prompt_field)
    if prompt is None or prompt == "" or prompt == []:  # the importer's rule too
        raise ValueError(f"row {index + 1} has no prompt in field {prompt_field!r}")
    problem: dict[str, Any] = {"external_id": external_id, "prompt": prompt_text(prompt)}
    used = {prompt_field, id_field, answer_field, embedding_field}
    if answer_field is not None:
        try:
            answer = get_field(row, answer_field)
        except KeyError:
            answer = None
        if answer is not None:
            problem["answer"] = str(answer)
    if embedding_field is not None:
        problem["embedding"] = [float(x) for x in get_field(row, embedding_field)]
    if metadata_fields is None:
        # the server's importer rule (bank/importer.py; tests/test_dataset_contract.py):
        # a `metadata` object column is merged, not nested; NaN (a missing value in a
        # columnar file) is stored as null
        nested = row.get("metadata")
        meta = dict(nested) if isinstance(nested, Mapping) else {}
        meta.update({k: _clean(v) for k, v in row.items()
                     if k not in used and k != "metadata" and _jsonable(v)})
    else:
        meta = {k: _clean(get_field(row, k)) for k in metadata_fields}
    if meta:
        problem["metadata"] = meta
    return problem


def add_dataset(
    client: Client,
    bank_id: int,
    source: Any,
    *,
    prompt_field: str = "prompt",
    id_field: str | None = None,
    id_format: str | None = None,
    answer_field: str | None = "answer",
    metadata_fields: Sequence[str] | None = None,
    embedding_field: str | None = None,
    chunk_size: int = 1000,
) -> tuple[AddProblemsResult, IndexMap]:
    """Add every row of `source` to bank `bank_id`; returns the server's answer and the
    `IndexMap` for this dataset. Rows already in the bank (same external id) are
    reported as duplicates, so re-running is safe."""
    values: list[Any] = []

    def problems(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for i, row in enumerate(rows):
            problem = problem_from_row(
                row, i, prompt_field=prompt_field, id_field=id_field, id_format=id_format,
                answer_field=answer_field, metadata_fields=metadata_fields,
                embedding_field=embedding_field)
            values.append(i if id_field is None else get_field(row, id_field))
            yield problem

    result = client.add_problems(bank_id, problems(iter_rows(source)), chunk_size=chunk_size)
    if id_field is None:
        index_map = IndexMap.positional(len(values), id_format or POSITION_FORMAT)
    else:
        index_map = IndexMap.from_values(values, id_format or "{}")
    return result, index_map
