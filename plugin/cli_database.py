"""Opening the database for a command: an engine on the migrated schema, or one line saying
what is wrong with the URL (`name`: the variable or option it came from), its password hidden."""

from __future__ import annotations

import click
from alembic.util.exc import CommandError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from plugin.store.db import make_engine, upgrade

URL_FORMS = "use sqlite:///FILE or postgresql://USER:PASSWORD@HOST/DB"


def open_migrated(url: str, name: str = "DATABASE_URL") -> Engine:
    shown = shown_url(url)
    try:
        engine = make_engine(url)
    except NoSuchModuleError as exc:
        raise click.ClickException(
            f"{name} {shown}: not a kind of database this app knows ({exc}); {URL_FORMS}"
        ) from None
    except (ArgumentError, ValueError) as exc:
        # a ValueError is a port that is not a number; its text is left out, as it could be
        # part of the password in a garbled URL
        reason = (
            one_line(exc)
            if isinstance(exc, ArgumentError)
            else "malformed, e.g. a port that is not a number"
        )
        raise click.ClickException(
            f"{name} is not a database URL ({reason}); {URL_FORMS}"
        ) from None
    except ImportError as exc:
        raise click.ClickException(
            f"{name} {shown}: its database driver is not installed ({exc}); {URL_FORMS}"
        ) from None
    try:
        upgrade(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise click.ClickException(
            f"cannot open the database in {name} {shown}: {one_line(exc.orig)}"
        ) from None
    except CommandError as exc:
        engine.dispose()
        raise click.ClickException(
            f"cannot open the database in {name} {shown}: its schema version is not one "
            f"this clvsync knows, perhaps a newer one ({one_line(exc)})"
        ) from None
    return engine


def shown_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(not a URL)"


def one_line(error: object) -> str:
    return " ".join(str(error).split())
