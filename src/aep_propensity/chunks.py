"""Lazy, re-iterable sequences of chunks: how a streaming node hands data to its dataset.

Kedro calls a dataset's ``save`` once per yield of a generator node, which would split one batch
into many; a node returns a :class:`ChunkSequence` instead and the dataset ingests all of its
chunks as one batch. Iterating runs the work, chunk by chunk, and logs progress; the next chunk
is made in a background thread while the consumer handles the current one (numpy, Arrow, LightGBM
and the engines release the GIL), so at most two chunks are in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from aep_propensity.platform import ParquetMap

logger = logging.getLogger(__name__)

S = TypeVar("S")
T = TypeVar("T")
_END = object()


class ChunkSequence(Generic[T]):
    """Chunks made on demand: ``make_chunks()`` gives a fresh iterator each time the sequence is iterated."""

    def __init__(
        self,
        make_chunks: Callable[[], Iterator[T]],
        label: str,
        n_chunks: int | None = None,
        source: ParquetMap | None = None,
    ) -> None:
        self._make_chunks = make_chunks
        self.label = label
        self.n_chunks = n_chunks
        self._source = source

    @classmethod
    def indexed(cls, make_chunk: Callable[[int], T], n_chunks: int, label: str) -> ChunkSequence[T]:
        """Chunks ``make_chunk(0) .. make_chunk(n_chunks - 1)``."""
        return cls(lambda: (make_chunk(index) for index in range(n_chunks)), label, n_chunks)

    @classmethod
    def mapped(cls, transform: Callable[[S], T], source: Iterable[S], label: str) -> ChunkSequence[T]:
        """``transform`` applied to each chunk of a re-iterable ``source``; when the source is Parquet files
        (it has a ``url``), the sequence says so (:meth:`parquet_source`), so that a backend may run the
        transform where the files are."""
        url = getattr(source, "url", None)
        return cls(
            lambda: (transform(chunk) for chunk in source),
            label,
            getattr(source, "n_chunks", None),
            ParquetMap(url, transform) if url else None,
        )

    def parquet_source(self) -> ParquetMap | None:
        """The Parquet files and per-batch transform these chunks are made of, if they are."""
        return self._source

    def __repr__(self) -> str:
        return f"ChunkSequence({self.label!r}, n_chunks={self.n_chunks})"

    def __iter__(self) -> Iterator[T]:
        started, rows, index = time.perf_counter(), 0, 0
        chunks = self._make_chunks()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunks") as pool:
            pending = pool.submit(next, chunks, _END)
            while (chunk := pending.result()) is not _END:
                pending = pool.submit(next, chunks, _END)
                index, rows = index + 1, rows + len(chunk)
                rate = rows / max(time.perf_counter() - started, 1e-9)
                logger.info(
                    "%s: chunk %d/%s, %s rows so far (%s rows/s)",
                    self.label,
                    index,
                    self.n_chunks or "?",
                    f"{rows:,}",
                    f"{rate:,.0f}",
                )
                yield chunk
