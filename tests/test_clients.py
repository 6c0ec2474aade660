"""Apollo Client (with PersistedQueryLink, over POST and GET) and urql (persistedExchange,
subscriptionExchange), unchanged, against the real server: tests/node/clients.test.mjs
under Node's test runner, with the packages of tests/node/package-lock.json (`npm ci`,
which .ci/run does when npm is on the machine). Without Node the test skips."""
from __future__ import annotations

import asyncio
import os
import pathlib
import shutil

import pytest

NODE_TESTS = pathlib.Path(__file__).parent / "node"


async def test_apollo_client_and_urql_work_unchanged(server, company):
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the Apollo Client and urql tests need it")
    if not (NODE_TESTS / "node_modules" / "@apollo" / "client").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("tests/node has no node_modules: .ci/run installs them with `npm ci`")
        pytest.skip("run `npm ci` in tests/node for the Apollo Client and urql tests")
    process = await asyncio.create_subprocess_exec(
        node, "--test", "clients.test.mjs", cwd=NODE_TESTS, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "INBOX_URL": server.url, "INBOX_TOKEN": company.ann.token,
             "INBOX_PARTNER_TOKEN": company.partner.token})
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    report = output.decode()
    assert process.returncode == 0, report
    assert "# pass 4" in report and "# fail 0" in report, report
