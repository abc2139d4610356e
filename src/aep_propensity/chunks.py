"""Lazy, re-iterable sequences of chunks: how a streaming node hands data to its dataset.

Kedro calls a dataset's ``save`` once per yield of a generator node, which would split one batch
into many; a node returns a :class:`ChunkSequence` instead and the dataset ingests all of its
chunks as one batch. Iterating runs the work, chunk by chunk, and logs progress; the next chunk
is made in a background thread while the consumer handles the current one (numpy, Arrow and the
engines release the GIL), so at most two chunks are in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ChunkSequence(Generic[T]):
    """``n_chunks`` chunks made on demand by ``make_chunk(index)``; iterating twice makes them twice."""

    def __init__(self, make_chunk: Callable[[int], T], n_chunks: int, label: str) -> None:
        self._make_chunk = make_chunk
        self.n_chunks = n_chunks
        self.label = label

    def __len__(self) -> int:
        return self.n_chunks

    def __repr__(self) -> str:
        return f"ChunkSequence({self.label!r}, n_chunks={self.n_chunks})"

    def __iter__(self) -> Iterator[T]:
        started, rows = time.perf_counter(), 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunks") as pool:
            pending = pool.submit(self._make_chunk, 0) if self.n_chunks else None
            for index in range(self.n_chunks):
                chunk = pending.result()
                pending = pool.submit(self._make_chunk, index + 1) if index + 1 < self.n_chunks else None
                rows += len(chunk)
                rate = rows / max(time.perf_counter() - started, 1e-9)
                logger.info(
                    "%s: chunk %d/%d, %s rows so far (%s rows/s)",
                    self.label,
                    index + 1,
                    self.n_chunks,
                    f"{rows:,}",
                    f"{rate:,.0f}",
                )
                yield chunk
