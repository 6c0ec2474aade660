"""What browser apps and their GraphQL clients need of the server (issue 13): CORS for the
allowed origins, and Apollo's automatic persisted queries over POST and GET, exactly as
Apollo Client's PersistedQueryLink and urql's persistedExchange send them."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import uuid

import pytest

from conftest import TEST_BROADCAST_URL, second_app
from server.persisted import LONGEST_KEPT, PersistedQueries

APP_ORIGIN = "http://localhost:3000"
ME = "query Me { me { id name } }"


def sha(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def apq(query_hash: str) -> dict:
    return {"persistedQuery": {"version": 1, "sha256Hash": query_hash}}


@pytest.fixture
async def allowing(server):
    """A server that allows the app's origin (INBOX_ALLOWED_ORIGINS=http://localhost:3000)."""
    async with second_app(dataclasses.replace(server.settings, allowed_origins=(APP_ORIGIN,))) as url:
        yield url


def preflight(origin: str) -> dict:
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"}


# --- CORS -----------------------------------------------------------------------------------------

async def test_an_allowed_origin_gets_its_preflight_answered(allowing, http):
    response = await http.options(f"{allowing}/graphql", headers=preflight(APP_ORIGIN))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_an_allowed_origin_may_read_answers_of_the_direct_path_and_the_view(allowing, company, http):
    headers = {"Origin": APP_ORIGIN, "Authorization": f"Bearer {company.ann.token}"}
    posted = await http.post(f"{allowing}/graphql", json={"query": ME}, headers=headers)
    got = await http.get(f"{allowing}/graphql", params={"query": ME}, headers=headers)
    refused = await http.post(f"{allowing}/graphql", json={"query": ME}, headers={"Origin": APP_ORIGIN})
    for response in (posted, got, refused):
        assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert posted.json()["data"]["me"]["name"] == "Ann Agent" == got.json()["data"]["me"]["name"]
    assert refused.status_code == 401


async def test_other_origins_get_no_cors_headers(allowing, company, http):
    response = await http.options(f"{allowing}/graphql", headers=preflight("http://evil.example"))
    assert "access-control-allow-origin" not in response.headers
    posted = await http.post(f"{allowing}/graphql", json={"query": ME},
                             headers={"Origin": "http://evil.example", "Authorization": f"Bearer {company.ann.token}"})
    assert "access-control-allow-origin" not in posted.headers


async def test_no_allowed_origins_means_no_cors_headers(server, company, http):
    response = await http.options(f"{server.url}/graphql", headers=preflight(APP_ORIGIN))
    assert "access-control-allow-origin" not in response.headers
    posted = await http.post(f"{server.url}/graphql", json={"query": ME},
                             headers={"Origin": APP_ORIGIN, "Authorization": f"Bearer {company.ann.token}"})
    assert "access-control-allow-origin" not in posted.headers


# --- Automatic persisted queries ------------------------------------------------------------------

def unique_query() -> str:
    """A document no earlier test has persisted."""
    return f"query Q_{uuid.uuid4().hex} {{ me {{ id name }} }}"


async def test_an_unknown_hash_alone_is_persisted_query_not_found(server, company, http):
    query = unique_query()
    response = await http.post(f"{server.url}/graphql", json={"extensions": apq(sha(query)), "variables": {}},
                               headers={"Authorization": f"Bearer {company.ann.token}"})
    # As Apollo Server: 200, so that Apollo Client retries with the document and keeps APQ on.
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["message"] == "PersistedQueryNotFound"
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert "no-cache" in response.headers["cache-control"]


async def test_a_hash_with_its_query_is_stored_and_later_runs_by_hash_alone_over_post(server, company, http):
    query, headers = unique_query(), {"Authorization": f"Bearer {company.ann.token}"}
    first = await http.post(f"{server.url}/graphql", headers=headers,
                            json={"query": query, "extensions": apq(sha(query)), "operationName": None})
    later = await http.post(f"{server.url}/graphql", headers=headers, json={"extensions": apq(sha(query))})
    assert first.json() == later.json() == {"data": {"me": {"id": company.ids["ann"], "name": "Ann Agent"}}}


async def test_persisted_queries_over_get_as_apollo_sends_them(server, company, http):
    """useGETForHashedQueries: the hash in `extensions`, variables JSON-encoded, no query."""
    query = "query Node($id: ID!) { node(id: $id) { id ... on User { name } } " + f"# {uuid.uuid4().hex}\n}}"
    headers = {"Authorization": f"Bearer {company.ann.token}"}
    params = {"operationName": "Node", "variables": json.dumps({"id": company.ids["bob"]}),
              "extensions": json.dumps(apq(sha(query)))}
    missing = await http.get(f"{server.url}/graphql", params=params, headers=headers)
    assert missing.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    stored = await http.get(f"{server.url}/graphql", params={**params, "query": query}, headers=headers)
    later = await http.get(f"{server.url}/graphql", params=params, headers=headers)
    assert stored.json() == later.json() == {"data": {"node": {"id": company.ids["bob"], "name": "Bob Agent"}}}


async def test_a_wrong_hash_with_a_query_is_refused_and_not_stored(server, company, http):
    query, other = unique_query(), unique_query()
    headers = {"Authorization": f"Bearer {company.ann.token}"}
    wrong = await http.post(f"{server.url}/graphql", headers=headers,
                            json={"query": query, "extensions": apq(sha(other))})
    assert wrong.status_code == 400
    assert wrong.json()["errors"][0] == {"message": "provided sha does not match query",
                                         "extensions": {"code": "BAD_USER_INPUT"}}
    for query_hash in (sha(other), sha(query)):
        again = await http.post(f"{server.url}/graphql", headers=headers, json={"extensions": apq(query_hash)})
        assert again.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_an_unsupported_version_is_refused(server, company, http):
    response = await http.post(f"{server.url}/graphql", headers={"Authorization": f"Bearer {company.ann.token}"},
                               json={"extensions": {"persistedQuery": {"version": 2, "sha256Hash": sha(ME)}}})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_persisted_queries_need_the_token(server, company, http):
    query = unique_query()
    response = await http.post(f"{server.url}/graphql", json={"query": query, "extensions": apq(sha(query))})
    assert response.status_code == 401
    later = await http.post(f"{server.url}/graphql", headers={"Authorization": f"Bearer {company.ann.token}"},
                            json={"extensions": apq(sha(query))})
    assert later.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_a_persisted_document_still_passes_every_limit(server, company, http):
    """A document over the depth limit is refused with its query, and is not kept to run later."""
    nested = "id"
    for _ in range(4):  # 4 fields a turn: past the depth limit of 12
        nested = f"conversation {{ messages {{ edges {{ node {{ {nested} }} }} }} }}"
    deep = f'query Deep {{ node(id: "x") {{ ... on Message {{ {nested} }} }} }} # {uuid.uuid4().hex}'
    headers = {"Authorization": f"Bearer {company.ann.token}"}
    first = await http.post(f"{server.url}/graphql", headers=headers,
                            json={"query": deep, "extensions": apq(sha(deep))})
    assert first.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "depth" in first.json()["errors"][0]["message"]
    later = await http.post(f"{server.url}/graphql", headers=headers, json={"extensions": apq(sha(deep))})
    assert later.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_the_store_keeps_at_most_its_capacity_and_forgets_the_least_recent():
    store = PersistedQueries(local_capacity=2)
    queries = [unique_query() for _ in range(3)]
    await store.put(sha(queries[0]), queries[0])
    await store.put(sha(queries[1]), queries[1])
    assert await store.get(sha(queries[0])) == queries[0]  # used: now the most recent
    await store.put(sha(queries[2]), queries[2])
    assert len(store.local) == 2
    assert await store.get(sha(queries[1])) is None
    assert await store.get(sha(queries[0])) == queries[0]


async def test_documents_too_long_to_keep_still_run(server, company, http):
    query = "query Long { me { id } }\n#" + "x" * LONGEST_KEPT
    headers = {"Authorization": f"Bearer {company.ann.token}"}
    first = await http.post(f"{server.url}/graphql", headers=headers,
                            json={"query": query, "extensions": apq(sha(query))})
    assert first.json() == {"data": {"me": {"id": company.ids["ann"]}}}
    later = await http.post(f"{server.url}/graphql", headers=headers, json={"extensions": apq(sha(query))})
    assert later.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.skipif(not TEST_BROADCAST_URL, reason="the shared store is Redis (INBOX_TEST_BROADCAST_URL)")
async def test_processes_share_persisted_queries_through_redis_within_its_capacity():
    namespace = f"apq-test-{uuid.uuid4().hex[:8]}"
    one = PersistedQueries(TEST_BROADCAST_URL, namespace, shared_capacity=3)
    other = PersistedQueries(TEST_BROADCAST_URL, namespace, shared_capacity=3)
    try:
        queries = [unique_query() for _ in range(5)]
        for query in queries:
            await one.put(sha(query), query)
        assert await other.get(sha(queries[4])) == queries[4]  # registered on one process, run on another
        assert await other.get(sha(queries[0])) is None  # the oldest went beyond the capacity
        assert await one.redis.hlen(one._documents) == 3
    finally:
        await one.redis.delete(one._documents, one._order)
        await one.aclose()
        await other.aclose()


# --- what a newcomer has: the clone ---------------------------------------------------------------

def test_the_readme_points_only_inside_the_clone():
    root = pathlib.Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    assert "../shared" not in readme
    assert "*.serve.lock" in (root / ".gitignore").read_text().split()
