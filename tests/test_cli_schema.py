"""`bitstat schema`: the help a new user reads before storing one, and `schema show` where no
schema is stored."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import bitstat
from bitstat.cli import main
from test_cli import Cli, make_namespace


@pytest.fixture
def fresh(embedded_url: str) -> Iterator[Cli]:
    """A namespace nobody has used."""
    cli = Cli(embedded_url, make_namespace())
    yield cli
    with cli.stats() as st:
        st.drop()


def schema_set_help() -> str:
    result = CliRunner().invoke(main, ["schema", "set", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.output


def help_keys() -> str:
    return schema_set_help().split("Keys (each optional):")[1].split("\n\n")[0]


def test_schema_set_help_says_what_ids_are() -> None:
    ids = help_keys().split("    ids ")[1].split("\n    timezone")[0]
    assert '"int"' in ids and '"map"' in ids and "UUIDs" in ids
    assert "fixed once the namespace holds data" in ids


def test_schema_set_help_explains_every_key() -> None:
    keys = help_keys()
    described = set(re.findall(r"^ {4}(\w+) ", keys, re.M))
    fields = {f.name for f in dataclasses.fields(bitstat.Schema)} - {"events"}
    assert fields <= described, f"schema set --help does not explain {fields - described}"
    assert "[events.NAME]" in keys


def test_schema_set_help_example_stores_a_schema_for_uuid_ids(fresh: Cli, tmp_path: Path) -> None:
    """The example file of the help, as a user would copy it: text ids (ids = "map") work."""
    example = schema_set_help().split("Example (shop.toml")[1].split("\n\n")[0]
    toml = "\n".join(line.strip() for line in example.splitlines()[1:])
    assert 'ids = "map"' in toml
    path = tmp_path / "shop.toml"
    path.write_text(toml + "\n")
    assert "Stored the schema of namespace" in fresh.ok("schema", "set", str(path))
    user = str(uuid.uuid4())
    with fresh.stats() as st:
        assert st.schema.ids == "map"
        st.track("login", user=user, country="NL", time="2026-11-02T10:00:00")
        assert list(st.actors("login").day(2026, 11, 2).ids()) == [user]


def test_schema_show_where_no_schema_is_stored(fresh: Cli) -> None:
    for fmt in ("toml", "json"):
        result = fresh("schema", "show", "--format", fmt)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr == (
            f"Error: no schema is stored for namespace {fresh.namespace!r}, and nothing is"
            " recorded there (store one with `bitstat schema set FILE`)\n"
        )
    with fresh.stats() as st:
        assert st.events() == []  # asking stored nothing

    # events recorded with no schema stored follow the default one, which is shown
    with fresh.stats() as st:
        st.track("login", user=1, time="2026-11-02T10:00:00")
    result = fresh("schema", "show")
    assert result.exit_code == 0, result.output
    assert 'ids = "int"' in result.stdout
    assert result.stderr.startswith(
        f"note: no schema is stored for namespace {fresh.namespace!r}; its events are recorded"
        " with the default schema"
    )


def test_schema_show_of_a_stored_schema_has_no_note(fresh: Cli) -> None:
    bitstat.connect(fresh.url, namespace=fresh.namespace, schema=bitstat.Schema()).close()
    result = fresh("schema", "show")
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith('actor = "user"\nids = "int"\n')


def test_schema_limits_show_as_set_and_read_back(fresh: Cli, tmp_path: Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text('ids = "map"\nanonymous = true\nmax_value_length = 64\nhorizon = "2d"\n')
    fresh.ok("schema", "set", str(path))
    shown = fresh.ok("schema", "show")
    assert 'horizon = "2d"' in shown and "max_value_length = 64" in shown
    assert "anonymous = true" in shown
    again = Cli(fresh.url, make_namespace())
    try:
        again.ok("schema", "set", "-", input=shown)
        with again.stats() as st, fresh.stats() as want:
            assert st.schema == want.schema
            assert (st.schema.anonymous, st.schema.horizon) == (True, 2 * 86400)
    finally:
        with again.stats() as st:
            st.drop()
