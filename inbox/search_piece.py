"""Which part of a search term PostgreSQL's trigram indexes look up (issue 15).

pg_trgm answers `UPPER(body) LIKE '%CONVERSATION 424247%'` by intersecting the index's
list of every trigram of the term, and a trigram found in most rows ("CON", "ONV"...)
has a list of millions: 180 ms at 3 million messages, against 3 ms for the trigrams of
"424247" alone. The index is therefore asked for the piece of the term whose trigrams
are rarest by a sample of the column, and each row it returns is then checked for the
whole term (`strpos`, which no index serves): the same rows, since a text containing the
term contains each piece of it.

The sample is what ANALYZE keeps of the indexed expression (pg_stats of the expression
index: about a hundred texts), read at most every SAMPLE_SECONDS per process and counted
by trigram then, so that a search costs a lookup per trigram of its term. With no sample
yet (a new database) or no trigram rarer than COMMON_SHARE of it, the whole term is
looked up, as before."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from tortoise.filters import escape_like

from . import sql

SAMPLE_SECONDS = 300.0
# A trigram in this share of the sampled texts or more is no better than the whole term's.
COMMON_SHARE = 0.2


@dataclass(frozen=True)
class Sample:
    """A sample of an indexed column's texts: how many, and in how many of them each
    trigram of letters and digits is found."""

    size: int
    trigrams: Counter

    @classmethod
    def of(cls, texts) -> "Sample":
        counts: Counter = Counter()
        for text in texts:
            counts.update({text[i:i + 3] for i in range(len(text) - 2) if text[i:i + 3].isalnum()})
        return cls(len(texts), counts)

    def __len__(self) -> int:
        return self.size


_samples: dict[str, tuple[float, Sample]] = {}


async def sample(index: str) -> Sample:
    """What ANALYZE sampled of the expression index `index` (upper-cased texts), counted (cached)."""
    now = time.monotonic()
    kept = _samples.get(index)
    if kept is not None and now - kept[0] < SAMPLE_SECONDS:
        return kept[1]
    rows = await sql.fetch(
        """SELECT histogram_bounds::text::text[] AS bounds, most_common_vals::text::text[] AS common
           FROM pg_stats WHERE schemaname = current_schema() AND tablename = :index""", index=index)
    counted = Sample.of([text for row in rows for key in ("bounds", "common") for text in row[key] or ()])
    _samples[index] = (now, counted)
    return counted


def _runs(term: str) -> list[tuple[int, int]]:
    """Where the term's words are (start, end): runs of letters and digits, as pg_trgm
    splits text; its trigrams never cross from one word to the next."""
    found, start = [], None
    for i, char in enumerate([*term, " "]):
        if char.isalnum():
            start = i if start is None else start
        elif start is not None:
            found.append((start, i))
            start = None
    return found


def rarest(term: str, sampled: Sample) -> str:
    """The piece of `term` to look up in the index: the longest run of its trigrams (within
    a word) that are each found in the fewest sampled texts, or the whole term when even
    those are common (or there is no sample to tell)."""
    upper = term.upper()
    if not sampled.size or len(upper) != len(term):
        return term
    hits = {}  # trigram start -> sampled texts holding it
    for start, end in _runs(upper):
        for i in range(start, end - 2):
            hits[i] = sampled.trigrams[upper[i:i + 3]]
    if not hits or min(hits.values()) >= COMMON_SHARE * sampled.size:
        return term
    fewest = min(hits.values())
    best = run = None
    for i in sorted(hits):
        if hits[i] == fewest:
            run = (run[0], i) if run is not None and run[1] == i - 1 else (i, i)
            if best is None or run[1] - run[0] > best[1] - best[0]:
                best = run
        else:
            run = None
    return term[best[0]:best[1] + 3]


async def pattern(term: str, index: str) -> str:
    """The LIKE pattern (escaped) that the index `index` is asked for."""
    return f"%{escape_like(rarest(term, await sample(index)))}%"
