"""Automatic persisted queries, as Apollo defines them: a client sends only the sha256 of
its document (`extensions.persistedQuery {version: 1, sha256Hash}`); when the server does
not know it, it answers PersistedQueryNotFound and the client sends the document with its
hash once, which the server checks and keeps.

A request is resolved here into the ordinary request it stands for (the document filled
in, the persistedQuery extension gone), which then runs like any other, under every limit.
The store is bounded: a per-process LRU, in front of one shared in Redis when the
broadcast backend is Redis, so that a document registered on one process runs on all."""
from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from typing import NamedTuple

log = logging.getLogger("inbox")

LOCAL_CAPACITY = 1_000
SHARED_CAPACITY = 5_000
# Longer documents run but are not kept: a store of 5,000 is then at most ~80 MiB.
LONGEST_KEPT = 16_384
_REDIS_TIMEOUT = 1.0

NOT_FOUND = "PersistedQueryNotFound"
HASH_MISMATCH = "provided sha does not match query"
UNSUPPORTED_VERSION = "Unsupported persisted query version"


class Refusal(NamedTuple):
    """An answer instead of an execution: the HTTP status and the one GraphQL error."""
    status: int
    message: str
    code: str

    def body(self) -> dict:
        return {"errors": [{"message": self.message, "extensions": {"code": self.code}}]}

    @property
    def headers(self) -> dict:
        # As Apollo Server: a not-found answer must never be cached (a GET through a CDN).
        return {"cache-control": "private, no-cache, must-revalidate"} if self.status == 200 else {}


# Apollo Server answers an unknown hash with 200, so that Apollo Client retries with the
# document and keeps using persisted queries (on a 400 or 500 it turns them off).
PERSISTED_QUERY_NOT_FOUND = Refusal(200, NOT_FOUND, "PERSISTED_QUERY_NOT_FOUND")


def sha256_of(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def persisted_query(params: dict) -> dict | None:
    """The request's persistedQuery extension, or None when it has none."""
    extensions = params.get("extensions")
    if type(extensions) is not dict:
        return None
    persisted = extensions.get("persistedQuery")
    return persisted if persisted is not None else None


class PersistedQueries:
    """The bounded store, and the resolution of a request that names a persisted query."""

    def __init__(self, broadcast_url: str = "memory://", namespace: str = "inbox",
                 local_capacity: int = LOCAL_CAPACITY, shared_capacity: int = SHARED_CAPACITY) -> None:
        self.local: OrderedDict[str, str] = OrderedDict()
        self.local_capacity = local_capacity
        self.shared_capacity = shared_capacity
        self.redis = None
        if broadcast_url.partition("://")[0] in ("redis", "rediss"):
            from redis import asyncio as aioredis

            self.redis = aioredis.Redis.from_url(broadcast_url, socket_timeout=_REDIS_TIMEOUT,
                                                 socket_connect_timeout=_REDIS_TIMEOUT)
            self._documents = f"{namespace}:apq:documents"
            self._order = f"{namespace}:apq:order"
            self._keep = self.redis.register_script(_KEEP)

    async def resolve(self, params: dict, valid) -> dict | Refusal:
        """`params` (a POST body, or a GET's decoded parameters) as the request to run, or
        the refusal to answer. `valid(query)`: whether a document parses and validates
        (only those are kept)."""
        persisted = persisted_query(params)
        if type(persisted) is not dict or persisted.get("version") != 1:
            return Refusal(400, UNSUPPORTED_VERSION, "BAD_USER_INPUT")
        sha = persisted.get("sha256Hash")
        if type(sha) is not str:
            return Refusal(400, "persistedQuery.sha256Hash must be a string", "BAD_USER_INPUT")
        sha = sha.lower()
        query = params.get("query")
        if query is None:
            query = await self.get(sha)
            if query is None:
                return PERSISTED_QUERY_NOT_FOUND
        elif type(query) is str:
            if sha256_of(query) != sha:
                return Refusal(400, HASH_MISMATCH, "BAD_USER_INPUT")
            if len(query) <= LONGEST_KEPT and valid(query):
                await self.put(sha, query)
        extensions = {key: value for key, value in params["extensions"].items() if key != "persistedQuery"}
        resolved = {key: value for key, value in params.items() if key != "extensions"}
        resolved["query"] = query
        if extensions:
            resolved["extensions"] = extensions
        return resolved

    async def get(self, sha: str) -> str | None:
        query = self.local.get(sha)
        if query is not None:
            self.local.move_to_end(sha)
            return query
        if self.redis is None:
            return None
        try:
            found = await self.redis.hget(self._documents, sha)
        except Exception as error:  # Redis away: the client sends the document again
            log.warning("persisted queries: Redis unreachable (%s)", type(error).__name__)
            return None
        if found is None:
            return None
        query = found.decode()
        if sha256_of(query) != sha:  # never run what another writer got wrong
            return None
        self._remember(sha, query)
        return query

    async def put(self, sha: str, query: str) -> None:
        self._remember(sha, query)
        if self.redis is None:
            return
        try:
            await self._keep(keys=[self._documents, self._order], args=[sha, query, time.time(),
                                                                        self.shared_capacity])
        except Exception as error:
            log.warning("persisted queries: Redis unreachable (%s)", type(error).__name__)

    def _remember(self, sha: str, query: str) -> None:
        self.local[sha] = query
        self.local.move_to_end(sha)
        while len(self.local) > self.local_capacity:
            self.local.popitem(last=False)

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


# One step, so that concurrent writers on any process keep the shared store within its
# capacity: a new document is added with its time, and the oldest ones beyond it go.
_KEEP = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
  if excess > 0 then
    local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
    for i = 1, #oldest, 2 do redis.call('HDEL', KEYS[1], oldest[i]) end
  end
end
return 1
"""
