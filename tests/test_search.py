"""Search by index (issue 15): `search` keeps its meaning (a case-insensitive substring of
the contact's name or of any message, docs/decisions.md) while it looks terms up in the
trigram indexes of models/migrations/0011_search_index.py, which every write keeps in
step in its own transaction; terms too short for a trigram still match."""
from __future__ import annotations

import logging
import re

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from inbox import sections, sql
from schema.ids import pk_of

from conftest import Client, Company, unique
from test_sending import install_partner

INBOX = """
query($section: InboxSection!, $search: String) {
  inbox(section: $section, search: $search, first: 100) { totalCount edges { node { id } } }
}"""
SEND = """
mutation($c: ID!, $b: String!) { sendMessage(conversationId: $c, body: $b) { id } }"""
DELETE = "mutation($c: ID!) { deleteConversation(conversationId: $c) }"
UNINSTALL = "mutation($c: ID!) { uninstallChannel(channelId: $c) }"


async def found(client: Client, term: str, section: str = "UNASSIGNED") -> list[str]:
    page = (await client.data(INBOX, {"section": section, "search": term}))["inbox"]
    ids = [edge["node"]["id"] for edge in page["edges"]]
    assert page["totalCount"] == len(ids)
    return ids


async def index_in_step() -> None:
    """The index holds exactly the rows' upper-cased text (SQLite's FTS tables, which
    triggers keep; PostgreSQL's GIN indexes are the database's own)."""
    if sql.is_postgres():
        return
    assert await sql.fetch("SELECT id, upper(body) AS body, conversation_id FROM message ORDER BY id") == \
        await sql.fetch("SELECT rowid AS id, body, conversation_id FROM message_search ORDER BY rowid")
    assert await sql.fetch("SELECT id, upper(name) AS name FROM contact ORDER BY id") == \
        await sql.fetch("SELECT rowid AS id, name FROM contact_search ORDER BY rowid")
    for table in ("message_search", "contact_search"):
        await sql.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")


async def indexed_conversations(term: str) -> set[int]:
    """The conversations whose messages the index itself finds for a term."""
    if sql.is_postgres():
        rows = await sql.fetch("SELECT conversation_id AS id FROM message WHERE upper(body) LIKE upper(:p)",
                               p=f"%{term}%")
    else:
        rows = await sql.fetch("SELECT conversation_id AS id FROM message_search WHERE message_search MATCH :p",
                               p=f'"{term.upper()}"')
    return {row["id"] for row in rows}


async def test_a_new_message_is_found_through_the_index(company: Company):
    conversation = (await company.inbound("the zebra crossing", contact=unique("c")))["conversation"]["id"]
    await company.inbound("nothing else", contact=unique("c"))

    assert await found(company.ann, "ZEBRA cross") == [conversation]
    assert await indexed_conversations("zebra") == {pk_of(conversation, "Conversation")}
    await index_in_step()


async def test_a_reply_is_found_through_the_index(company: Company, fakes):
    conversation = (await install_partner(company, fakes)).conversation_id

    await company.admin.data(SEND, {"c": conversation, "b": "Your quarterly figures are attached"})

    assert await found(company.ann, "QUARTERLY") == [conversation]
    await index_in_step()


async def test_a_renamed_contact_is_found_by_its_new_name_only(company: Company):
    contact = unique("c")
    conversation = (await company.inbound("hi", contact=contact, name="Marigold Finch"))["conversation"]["id"]

    await company.inbound("again", contact=contact, name="Hazel Wren")

    assert await found(company.ann, "hazel wr") == [conversation]
    assert await found(company.ann, "marigold") == []
    await index_in_step()


async def test_a_deleted_conversation_leaves_the_index_and_a_restored_one_has_only_its_new_messages(company):
    contact = unique("c")
    conversation = (await company.inbound("the secret plan", contact=contact))["conversation"]["id"]

    await company.admin.data(DELETE, {"c": conversation})
    assert await indexed_conversations("secret plan") == set()
    await index_in_step()

    await company.inbound("a fresh start", contact=contact)
    assert await found(company.ann, "secret plan") == []
    assert await found(company.ann, "fresh start") == [conversation]
    await index_in_step()


async def test_uninstalling_a_channel_leaves_the_index(company: Company):
    await company.inbound("about the walrus", contact=unique("c"), name="Walter Walrus")

    await company.admin.data(UNINSTALL, {"c": company.channel_id})

    assert await indexed_conversations("walrus") == set()
    await index_in_step()


async def test_one_and_two_character_searches_still_match(company: Company):
    # Too short for a trigram: these scan, with the same meaning
    short = (await company.inbound("ok", contact=unique("c"), name="Al Bo"))["conversation"]["id"]
    await company.inbound("nothing", contact=unique("c"), name="Zed")

    assert await found(company.ann, "K") == [short]
    assert await found(company.ann, "al") == [short]
    assert await found(company.ann, " ok ") == [short]


async def test_search_folds_unicode_case_through_the_index_as_before(company: Company):
    ecole = (await company.inbound("À l'ÉCOLE demain", contact=unique("c")))["conversation"]["id"]
    strasse = (await company.inbound("in der Hauptstraße", contact=unique("c")))["conversation"]["id"]
    delta = (await company.inbound("hi", contact=unique("c"), name="Δέλτα Ωμέγα"))["conversation"]["id"]

    assert await found(company.ann, "l'école") == [ecole]
    assert await found(company.ann, "éc") == [ecole]  # two characters: the scan, the same folding
    if not sql.is_postgres():  # Python's upper() ("ß" -> "SS"), as SQLite's LIKE compared before
        assert await found(company.ann, "HAUPTSTRASSE") == [strasse]
    assert await found(company.ann, "HAUPTSTRAßE") == [strasse]
    assert await found(company.ann, "δέλτα ωμ") == [delta]
    await index_in_step()


async def test_search_uses_the_trigram_indexes_and_scans_no_message(company: Company):
    await company.inbound("find the needle here", contact=unique("c"))
    statements = _Statements()
    logger = logging.getLogger("tortoise.db_client")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(statements)
    try:
        assert len(await found(company.ann, "needle")) == 1
    finally:
        logger.removeHandler(statements)
        logger.setLevel(previous)
    searches = [text for text in statements.seen if "message_search" in text or "UPPER(sm.body)" in text]
    assert len(searches) == 1  # read once: the page and its totalCount take the conversations found

    plan = await _plan(*statements.parse(searches[0]))
    if sql.is_postgres():
        assert "message_body_search" in plan and "contact_name_search" in plan, plan
        assert "Seq Scan on message" not in plan and "Seq Scan on contact" not in plan, plan
    else:
        assert plan.count("VIRTUAL TABLE INDEX") == 2, plan
        assert not re.search(r"SCAN (message|contact|sm|sc)\b(?!_)", plan), plan


async def test_a_common_term_walks_the_section_with_the_same_meaning(company: Company, monkeypatch):
    # Given a term the index finds often (here: twice is often)
    monkeypatch.setattr(sections, "COMMON_TERM_ROWS", 2)
    first = (await company.inbound("common words", contact=unique("c")))["conversation"]["id"]
    await company.inbound("other talk", contact=unique("c"))
    second = (await company.inbound("hi", contact=unique("c"), name="Mr Common"))["conversation"]["id"]
    third = (await company.inbound("COMMON again", contact=unique("c")))["conversation"]["id"]

    # Then pages find what the index would, newest first
    assert await found(company.ann, "common") == [third, second, first]
    assert await found(company.ann, "ommon wor") == [first]


# -- PostgreSQL: the index asked for the term's rarest piece (inbox/search_piece.py) -----


SAMPLE = ("SEEDED MESSAGE 1 OF CONVERSATION 12", "SEEDED MESSAGE 2 OF CONVERSATION 99",
          "SEEDED MESSAGE 3 OF CONVERSATION 5")


@pytest.mark.parametrize("term, piece", [
    ("conversation 424247", "424247"),      # the common word is left out
    ("Conversation 9x9x", "9x9x"),          # the piece as the term spells it
    ("seeded message", "seeded message"),   # every trigram common: the whole term
    ("424247", "424247"),
    ("of 1", "of 1"),                       # no trigram at all
    ("message 12 ZQV", "ZQV"),              # the rarest trigrams, not the longest word
    ("ab cd", "ab cd"),
    ("straße 77", "straße 77"),             # upper-casing changes its length: the whole term
])
def test_the_index_is_asked_for_the_run_of_the_rarest_trigrams_of_one_word(term, piece):
    from inbox.search_piece import Sample, rarest

    assert rarest(term, Sample.of(SAMPLE)) == piece
    assert piece in term


def test_without_a_sample_the_whole_term_is_looked_up():
    from inbox.search_piece import Sample, rarest

    assert rarest("conversation 424247", Sample.of(())) == "conversation 424247"


async def test_a_term_looked_up_by_its_rarest_piece_finds_exactly_its_matches(company: Company, monkeypatch):
    from inbox import search_piece

    # Given conversations holding a term's rare word without the term, and with it
    target = (await company.inbound("Ask about order kumquat-77311 today", contact=unique("c")))["conversation"]["id"]
    await company.inbound("kumquat-77311 alone", contact=unique("c"))
    await company.inbound("order kumquat 77311 spaced", contact=unique("c"))
    named = (await company.inbound("hi", contact=unique("c"), name="Order Kumquat-77311 Ltd"))["conversation"]["id"]
    await company.inbound("hi", contact=unique("c"), name="Kumquat-77311 Other")
    if sql.is_postgres():
        # and what ANALYZE samples of the indexed texts, read afresh
        await sql.execute("ANALYZE message")
        await sql.execute("ANALYZE contact")
        monkeypatch.setattr(search_piece, "_samples", {})
        sample = await search_piece.sample("message_body_search")
        assert sample and await search_piece.sample("contact_name_search")
        assert search_piece.rarest("order KUMQUAT-77311", sample) != "order KUMQUAT-77311"

    # Then the search finds the whole term only, in messages and in names
    assert sorted(await found(company.ann, "order KUMQUAT-77311")) == sorted([target, named])
    assert await found(company.ann, "about order kumquat-77311 to") == [target]


class _Statements(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())

    @staticmethod
    def parse(text: str) -> tuple[str, list]:
        """A logged statement's SQL and parameters (tortoise logs `sql: [params]`)."""
        import ast

        statement, _, params = text.rpartition(": ")
        return statement, list(ast.literal_eval(params))


class _RolledBack(Exception):
    pass


async def _plan(statement: str, params: list) -> str:
    connection = connections.get("default")
    if not sql.is_postgres():
        _, rows = await connection.execute_query("EXPLAIN QUERY PLAN " + statement, params)
        return "\n".join(dict(row)["detail"] for row in rows)
    # A test company is tiny: any scan of its few rows would win. Planned as for a company
    # with 20,000 more messages (added, analysed and rolled back), without sequential scans.
    plan = []
    try:
        async with in_transaction() as transaction:
            await transaction.execute_query(
                "INSERT INTO message (company_id, channel_id, conversation_id, direction, body, sent_at, status,"
                " created_at) SELECT company_id, channel_id, conversation_id, direction, 'filler ' || g, sent_at,"
                " status, created_at FROM message, generate_series(1, 20000) g"
                " WHERE id = (SELECT MAX(id) FROM message)")
            await transaction.execute_query("ANALYZE message")
            await transaction.execute_query("SET LOCAL enable_seqscan = off")
            _, rows = await transaction.execute_query("EXPLAIN " + statement, params)
            plan = [dict(row)["QUERY PLAN"] for row in rows]
            raise _RolledBack
    except _RolledBack:
        pass
    return "\n".join(plan)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
