"""What every command that reads the store starts with: the settings, an engine on the migrated
schema (or one line saying what is wrong with the URL, its password hidden), and the shop named."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click
from alembic.util.exc import CommandError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlmodel import Session

from plugin.settings import Settings, SettingsError, load_settings
from plugin.store import shops
from plugin.store.db import make_engine, upgrade
from plugin.store.models import Shop

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


def load_command_settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(f"configuration: {exc}") from None


@contextlib.contextmanager
def open_store(settings: Settings) -> Iterator[Engine]:
    """An engine on a schema brought up to date by the migrations, disposed of after use.

    What goes wrong while opening (a URL that is not one, a driver not installed, a server that
    does not answer, a file that is not a database, a schema newer than this code) is one line
    naming DATABASE_URL without its password; a database error later in the command is reported
    as such, not as a failure to open."""
    engine = open_migrated(settings.database_url)
    try:
        yield engine
    except OperationalError as exc:
        raise click.ClickException(f"database error: {one_line(exc.orig)}") from None
    finally:
        engine.dispose()


def shop_or_fail(session: Session, domain: str, param_hint: str = "--shop") -> Shop:
    """The registered shop of `domain`; a usage error naming `param_hint` (the option or
    argument the domain came from) if it is no shop domain, exit 1 if no such shop is held."""
    try:
        shop = shops.get_shop(session, shops.normalise_domain(domain))
    except shops.ShopDomainError as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None
    if shop is None:
        raise click.ClickException(f"no shop {domain!r}: add it with `clvsync shop add`")
    return shop
