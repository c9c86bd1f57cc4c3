"""CLI identity and erasure: `bitstat alias ANON USER` and `bitstat forget ID`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .output import count, format_option, to_csv, to_json

if TYPE_CHECKING:
    from .main import Settings


@click.command(short_help="Link an anonymous id to a user id (one actor from then on).")
@click.argument("anon")
@click.argument("user")
@format_option
@click.pass_obj
def alias(settings: Settings, anon: str, user: str, fmt: str) -> None:
    """Link the anonymous id ANON to the user id USER: what ANON did is merged into USER's
    actor sets (unique actors, retention and funnels count one person), and with text ids
    (ids="map") ANON's later events count as USER's. Event counters are unchanged. Running it
    again changes nothing. See docs/identity.md.

    \b
    Example:
        bitstat alias 3f2c9a1e-anon user-42
        bitstat --namespace shop alias anon-17 user-42 --format json
    """
    with settings.connect() as st:
        done = st.alias(anon, user)
    fields = {"anon": anon, "user": user, "outcome": done.outcome, "moved": done.moved}
    if fmt == "json":
        click.echo(to_json(fields))
    elif fmt == "csv":
        click.echo(to_csv(list(fields), [list(fields.values())]), nl=False)
    else:
        said = {
            "merged": f"merged: {count(done.moved, 'actor set')} moved from {anon} to {user}",
            "linked": f"linked: {anon} now stands for {user}",
            "renamed": f"linked: {user} now names the actor recorded as {anon}",
            "same": f"{anon} and {user} were one actor already; nothing changed"
            if not done.moved
            # (another call merged them meanwhile; this one moved sets of it too)
            else f"{anon} and {user} are one actor (another call merged them meanwhile):"
            f" {count(done.moved, 'actor set')} moved by this one",
        }
        click.echo(said[done.outcome])


@click.command(short_help="Erase one actor from every actor set (GDPR).")
@click.argument("actor")
@format_option
@click.pass_obj
def forget(settings: Settings, actor: str, fmt: str) -> None:
    """Erase ACTOR (and the ids aliased to it) from every actor set and segment of the
    namespace and free its id mapping: no query counts or returns it afterwards. Aggregated
    counters (event totals, counts, sums, top values, distinct values) hold no identity and
    are kept; the answer names them. Running it again changes nothing. See docs/identity.md.

    \b
    Example:
        bitstat forget user-42
        bitstat --namespace shop forget user-42 --format json
    """
    with settings.connect() as st:
        done = st.forget(actor)
    fields = {
        "actor": actor,
        "found": done.found,
        "ids": done.ids,
        "removed": done.removed,
        "scanned": done.scanned,
        "kept": done.kept,
    }
    if fmt == "json":
        click.echo(to_json(fields))
    elif fmt == "csv":
        row = [actor, done.found, " ".join(map(str, done.ids)), done.removed, done.scanned]
        row.append("; ".join(done.kept))
        click.echo(to_csv(list(fields), [row]), nl=False)
    elif not done.found:
        click.echo(f"{actor} is not in namespace {st.namespace!r}; nothing to erase.")
    else:
        ids = ", ".join(map(str, done.ids))
        click.echo(f"Erased {ids}: taken out of {count(done.removed, 'actor set')}.")
        click.echo(f"Kept (aggregates without identity): {', '.join(done.kept)}.")


COMMANDS: list[click.Command] = [alias, forget]
