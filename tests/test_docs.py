"""The code of README.md and docs/*.md is run, so the docs cannot rot.

Every fenced block is accounted for. An HTML comment on the line before a block may say how:

    <!-- docs-test: skip: REASON -->        not run, for the reason given
    <!-- docs-test: by tests/test_x.py -->   run by that test, which reads the page
    <!-- docs-test: setup                   Python run before the block, unseen by readers
    CODE
    -->

Unmarked `python` blocks of a page run in order in one scope, against the session's embedded
server: `bitstat.connect` and `bitstat.aio.connect` are redirected there (a `redis+cluster://`
URL to the session's cluster), each namespace gets a prefix of its own and is dropped at the
end. A block with a top-level `await` runs under `asyncio.run`, on a copy of the scope (what it
makes belongs to that loop). A `text` block right after a Python block is what it prints.

Unmarked `console` blocks run their `$ bitstat ...` lines through click's CliRunner in
a scratch directory (where `src` is this checkout's): the output, as a terminal shows stdout and
stderr, must be the lines shown, rates and durations aside. `$ cat FILE` followed by lines
writes FILE, `$ echo $?` checks the exit status, `$ export NAME=VALUE` sets the environment,
`$ NAME=VALUE` a variable, and `$ curl ...` asks a `bitstat serve` app of the page's default
namespace, started at the first curl. Any other block, or any other command, needs a marker.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import re
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import bitstat
import bitstat.aio
from bitstat.cli import main

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python", "console"}
MARKER = re.compile(r"<!-- docs-test: (skip|by|setup)\b:?\s*(.*?)\s*-->\s*\Z", re.S)
FENCE = re.compile(r"^```(\S*)\n(.*?)^```\n", re.S | re.M)


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    body: str
    marker: str | None = None  # skip, by, setup
    note: str = ""  # the reason, the test, or the setup code
    output: str | None = None  # a Python block's printed output, as the page shows it

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's fenced blocks, with their markers; a `text` block right after a Python block
    is folded into it as its output."""
    text = page.read_text("utf-8")
    found: list[Block] = []
    end = 0
    for match in FENCE.finditer(text):
        before = text[: match.start()]
        block = Block(page, before.count("\n") + 1, match.group(1), match.group(2))
        if before.endswith("-->\n"):
            marked = MARKER.match("<!--" + before.rsplit("\n<!--", 1)[-1])
            if marked is not None:
                block.marker, block.note = marked.group(1), marked.group(2)
        previous = found[-1] if found else None
        if (
            block.lang == "text"
            and block.marker is None
            and previous is not None
            and previous.lang == "python"
            and previous.marker in (None, "setup")
            and not text[end : match.start()].strip()
        ):
            previous.output = block.body
        else:
            found.append(block)
        end = match.end()
    return found


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page)]


def test_every_block_is_run_or_says_why() -> None:
    problems = []
    for block in all_blocks():
        if block.marker == "skip" and not block.note:
            problems.append(f"{block.where}: a skip without a reason")
        elif block.marker == "by":
            target = ROOT / block.note
            if not target.is_file():
                problems.append(f"{block.where}: {block.note} does not exist")
            elif not re.search(rf"{block.page.name}|\bdocs\b", target.read_text("utf-8")):
                problems.append(f"{block.where}: {block.note} reads neither it nor docs/")
        elif block.marker in (None, "setup") and block.lang not in RUN:
            problems.append(f"{block.where}: a `{block.lang or 'plain'}` block needs a marker")
    assert not problems, "\n".join(problems)


def test_the_quick_start_tests_as_the_ci_does() -> None:
    """The README's second command is the one `.ci/run` runs from a clean clone."""
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    found = FENCE.search(section)
    assert found is not None
    commands = found.group(2).splitlines()
    assert len(commands) == 2 and commands[0].endswith("bitstat demo")
    assert commands[1] == (ROOT / ".ci" / "test-command").read_text().strip()


# running a page


class Redirect:
    """`bitstat.connect` and `bitstat.aio.connect` as a page's code calls them, sent to the
    test servers under namespaces of this test alone."""

    def __init__(self, request: pytest.FixtureRequest, embedded_url: str) -> None:
        self.request = request
        self.embedded_url = embedded_url
        self.prefix = f"doc{uuid.uuid4().hex[:6]}-"
        self.opened: set[tuple[str, str]] = set()
        self.connections: list[bitstat.Stats] = []
        self.connect = bitstat.connect
        self.aio_connect = bitstat.aio.connect

    def namespace(self, name: str) -> str:
        return self.prefix + name

    def cli_namespace(self, url: str, name: str) -> str:
        self.opened.add((url, self.namespace(name)))
        return self.namespace(name)

    def place(self, url: str | None, namespace: str) -> tuple[str, str]:
        if url is not None and url.startswith("redis+cluster://"):
            url = self.request.getfixturevalue("cluster_url")
        else:
            url = self.embedded_url
        self.opened.add((url, self.namespace(namespace)))
        return url, self.namespace(namespace)

    def sync(self, url: str | None = None, *, namespace: str = "bitstat", **kw: Any) -> Any:
        url, namespace = self.place(url, namespace)
        stats = self.connect(url, namespace=namespace, **kw)
        self.connections.append(stats)
        return stats

    async def aio(self, url: str | None = None, *, namespace: str = "bitstat", **kw: Any) -> Any:
        url, namespace = self.place(url, namespace)
        return await self.aio_connect(url, namespace=namespace, **kw)

    def drop(self) -> None:
        for stats in self.connections:
            stats.close()
        for url, namespace in self.opened:
            with self.connect(url, namespace=namespace) as stats:
                stats.drop()


@pytest.fixture
def redirect(
    request: pytest.FixtureRequest, embedded_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Redirect]:
    to = Redirect(request, embedded_url)
    monkeypatch.setattr(bitstat, "connect", to.sync)
    monkeypatch.setattr(bitstat.aio, "connect", to.aio)
    monkeypatch.setenv("BITSTAT_URL", embedded_url)
    try:
        yield to
    finally:
        to.drop()


def run_python(block: Block, scope: dict[str, Any]) -> None:
    code = compile(block.body, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        if code.co_flags & inspect.CO_COROUTINE:
            asyncio.run(eval(code, dict(scope)))
        else:
            exec(code, scope)
    if block.output is not None:
        assert printed.getvalue() == block.output, f"{block.where} prints otherwise"


MASKS = [
    (re.compile(r"\d[\d,.]*(?=/s\b| events/s\b)"), "N"),  # rates
    (re.compile(r"\b\d[\d.]* s\b"), "N s"),  # durations
    (re.compile(r"(\d+|-):[\d-]{2}:[\d-]{2}"), "T"),  # progress bars' time left
]


def masked(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = line.rstrip()
        for pattern, mask in MASKS:
            line = pattern.sub(mask, line)
        out.append(line)
    return out


def commands(body: str) -> Iterator[tuple[str, list[str]]]:
    """(command, the lines shown after it) of a console block; `\\` continues a command."""
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        assert lines[i].startswith("$ "), f"not a command: {lines[i]!r}"
        command = lines[i][2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + lines[i].strip()
        i += 1
        shown = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        yield command, shown


EXAMPLE_SERVER = re.compile(r"^(?:http://)?(?:localhost|127\.0\.0\.1):8600")


class Shell:
    """The commands of a page's console blocks, in a scratch directory, on the test servers."""

    def __init__(self, redirect: Redirect, url: str, stack: contextlib.ExitStack) -> None:
        self.redirect = redirect
        self.url = url
        self.stack = stack
        self.env = {
            "BITSTAT_URL": url,
            "BITSTAT_NAMESPACE": redirect.cli_namespace(url, "bitstat"),
            "COLUMNS": "80",
        }
        self.variables: dict[str, str] = {}
        self.status = 0
        self.base: str | None = None  # the HTTP server the page's curl commands reach

    def run(self, block: Block) -> None:
        for command, shown in commands(block.body):
            where = f"{block.where}: $ {command}"
            words = shlex.split(command)
            assignment = re.fullmatch(r"(\w+)=(.*)", words[0]) if len(words) == 1 else None
            words = [self.variables.get(w[1:], w) if w.startswith("$") else w for w in words]
            if assignment is not None:
                self.variables[assignment.group(1)] = assignment.group(2)
            elif words[:2] == ["echo", "$?"]:
                assert shown == [str(self.status)], where
            elif words[0] == "cat" and len(words) == 2:
                Path(words[1]).write_text("".join(line + "\n" for line in shown), "utf-8")
            elif words[0] == "export":
                for word in words[1:]:
                    name, value = word.split("=", 1)
                    if name == "BITSTAT_NAMESPACE":
                        value = self.redirect.cli_namespace(self.url, value)
                    self.env[name] = value
            elif words[0] == "bitstat":
                self.bitstat(words[1:], shown, where)
            elif words[0] == "curl":
                assert [self.curl(words[1:])] == shown, f"{where}\nshown:\n{shown}"
            else:
                raise AssertionError(f"{where}: not a command the docs test runs; mark the block")

    def bitstat(self, args: list[str], shown: list[str], where: str) -> None:
        for i, word in enumerate(args[:-1]):
            if word == "--namespace":
                args[i + 1] = self.redirect.cli_namespace(self.url, args[i + 1])
        result = CliRunner().invoke(main, args, env=self.env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(where) from result.exception
        self.status = result.exit_code
        got = result.output.replace(self.redirect.prefix, "").rstrip("\n").splitlines()
        assert masked(got) == masked(shown), f"{where}\nshown:\n{shown}\nprinted:\n{got}"

    def curl(self, args: list[str]) -> str:
        """The body `curl -s [-X METHOD] [-H HEADER]... [--json BODY] URL` prints, from a
        `bitstat serve` app of the page's default namespace (started at the first call)."""
        if self.base is None:
            from bitstat.web import ServerConfig
            from webserver import running

            config = ServerConfig(url=self.url, namespace=self.env["BITSTAT_NAMESPACE"])
            self.base = self.stack.enter_context(running(config))
        method, headers, body, target = "GET", {}, None, None
        words = iter(args)
        for word in words:
            if word == "-s":
                continue
            if word == "-X":
                method = next(words)
            elif word == "-H":
                name, value = next(words).split(":", 1)
                headers[name.strip()] = value.strip()
            elif word == "--json":
                method, body = "POST", next(words).encode()
                headers["Content-Type"] = headers["Accept"] = "application/json"
            else:
                assert target is None and EXAMPLE_SERVER.match(word), f"curl {word}?"
                target = EXAMPLE_SERVER.sub(self.base, word)
        assert target is not None
        answer = httpx.request(method, target, headers=headers, content=body, timeout=30)
        return answer.text


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.marker in (None, "setup") and b.lang in RUN]


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if runnable(p)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_page_runs(
    page: Path,
    redirect: Redirect,
    embedded_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").symlink_to(ROOT / "src")
    scope: dict[str, Any] = {"__name__": "__docs__"}
    with contextlib.ExitStack() as stack:
        shell = Shell(redirect, embedded_url, stack)
        for block in runnable(page):
            if block.marker == "setup":
                exec(block.note, scope)
            if block.lang == "python":
                run_python(block, scope)
            else:
                shell.run(block)
    for value in scope.values():
        if isinstance(value, bitstat.Stats):
            value.close()


LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings."""
    text = FENCE.sub("", page.read_text("utf-8"))
    headings = re.findall(r"^#+ (.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_relative_links_reach_a_file_and_a_heading() -> None:
    problems = []
    for page in PAGES:
        for target in LINK.findall(FENCE.sub("", page.read_text("utf-8"))):
            if re.match(r"\w+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                problems.append(f"{page.relative_to(ROOT)}: {target} does not exist")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{page.relative_to(ROOT)}: {target} has no such heading")
    assert not problems, "\n".join(problems)
