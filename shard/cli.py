"""`shard` command line. `shard oracle` flags are derived from `OracleSettings`, so every flag
is also a `SHARD_*` environment variable (a flag given on the command line wins)."""

import argparse
import logging
import socket
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from shard import __version__
from shard.config import OracleSettings, ScoutSettings
from shard.store.api_keys import KeyStore
from shard.store.database import Database
from shard.swarm.protocol import MAX_ORACLE_FRAME_BYTES

KEEP_ALIVE_S = 75
"""How long an idle client connection stays open: longer than clients keep one in their
pools (httpx, under the OpenAI SDK, 5 s), so that a client never sends a request on a
connection the server is closing (uvicorn's own 5 s raced it)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_settings_flags(parser: argparse.ArgumentParser, fields: dict[str, FieldInfo]) -> None:
    """One flag per settings field; list fields repeat (`--served-model-name a --served-...`)."""
    for name, info in fields.items():
        annotation = info.annotation
        if SecretStr in typing.get_args(annotation):
            continue  # secrets come from the environment, never from `ps`
        args = typing.get_args(annotation)
        origin = typing.get_origin(annotation)
        help_text = info.description or ""
        if origin is list:
            parser.add_argument(_flag(name), dest=name, action="append", help=help_text)
            continue
        unions = (types.UnionType, typing.Union)
        kinds = [a for a in args if a is not type(None)] if origin in unions else []
        kind: Any = kinds[0] if kinds else annotation
        if kind is bool:
            parser.add_argument(
                _flag(name), dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
            continue
        if typing.get_origin(kind) is typing.Literal:
            choices = typing.get_args(kind)
            parser.add_argument(_flag(name), dest=name, choices=choices, help=help_text)
            continue
        parser.add_argument(_flag(name), dest=name, type=kind, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shard", description="Shard inference oracle")
    parser.add_argument("--version", action="version", version=f"shard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    oracle = commands.add_parser(
        "oracle", help="serve a GGUF model behind the OpenAI Chat Completions API"
    )
    _add_settings_flags(oracle, OracleSettings.model_fields)

    scout = commands.add_parser(
        "scout", help="join an oracle's swarm and draft tokens for it with a small model"
    )
    _add_settings_flags(scout, ScoutSettings.model_fields)

    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    keys.add_argument("--database-url", help="store URL (default: SHARD_DATABASE_URL or SQLite)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--name", default="", help="a label to recognise the key by")
    create.add_argument("--admin", action="store_true", help="make an admin key")
    key_commands.add_parser("list", help="list keys (never the keys themselves)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id", help="the key's id, as `shard keys list` shows it")
    return parser


def settings_from_args(args: argparse.Namespace) -> OracleSettings:
    """Flags given on the command line override the environment; the rest come from it."""
    return OracleSettings(**_given(args, OracleSettings.model_fields))


def _given(args: argparse.Namespace, fields: dict[str, FieldInfo]) -> dict[str, Any]:
    return {name: value for name in fields if (value := getattr(args, name, None)) is not None}


def run_scout_command(args: argparse.Namespace) -> None:
    from shard.swarm.scout import run_scout

    settings = ScoutSettings(**_given(args, ScoutSettings.model_fields))
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not settings.key:
        sys.exit("shard scout: give the oracle's API key with --key or SHARD_SCOUT_KEY")
    run_scout(settings)


def run_oracle(settings: OracleSettings) -> None:
    from shard.api.app import create_app
    from shard.default_model import default_model_path

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _refuse_a_taken_port(settings.host, settings.port)
    model_path: Path = settings.model or default_model_path()
    if not model_path.is_file():
        sys.exit(f"shard: no model file at {model_path}")
    database = Database(settings.database_url)
    configured = settings.api_key.get_secret_value() if settings.api_key else None
    try:
        first_key = KeyStore(database).ensure_bootstrap(configured)
    except ValueError as error:
        sys.exit(f"shard: SHARD_API_KEY cannot be used: {error}")
    if first_key:
        print(
            "\nNo API keys existed, so an admin key was created. It is shown this once only:\n\n"
            f"    {first_key}\n\nMake more with `shard keys create`.\n",
            file=sys.stderr,
            flush=True,
        )
    app = create_app(settings, model_path, database)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws_max_size=MAX_ORACLE_FRAME_BYTES,  # scouts never need more; the hub checks less
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def _refuse_a_taken_port(host: str, port: int) -> None:
    """Say so before the model loads: uvicorn binds only after the app has started."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as error:
        sys.exit(
            f"shard: cannot listen on {host}:{port}: {error.strerror or error}. Is another "
            "server there? Give another with --port (or SHARD_PORT)."
        )


def run_keys(args: argparse.Namespace) -> None:
    """`shard keys ...`: works on the store directly, so it needs no running oracle."""
    url = args.database_url or OracleSettings().database_url
    store = KeyStore(Database(url))
    if args.keys_command == "create":
        key, record = store.create(args.name, "admin" if args.admin else "user")
        print(f"{key}\n(id {record.id}, role {record.role}; this is the only time it is shown)")
    elif args.keys_command == "list":
        print(f"{'id':<30} {'role':<6} {'state':<8} {'created':<20} {'hint':<20} name")
        for record in store.list():
            state = "revoked" if record.revoked_at else "live"
            created = record.created_at.strftime("%Y-%m-%d %H:%M:%S")
            print(
                f"{record.id:<30} {record.role:<6} {state:<8} {created:<20} "
                f"{record.hint:<20} {record.name}"
            )
    elif store.revoke(args.id) is None:
        sys.exit(f"shard: no key with id {args.id}")
    else:
        print(f"revoked {args.id}")


def _settings_errors(error: ValidationError) -> str:
    """Pydantic's errors as one line each, naming the flag (`--n-ctx: ...`)."""
    lines = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        fields = [_flag(str(part)) for part in item["loc"]]
        lines.append(f"{', '.join(fields)}: {message}" if fields else message)
    return "; ".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "oracle":
        try:
            settings = settings_from_args(args)
        except ValidationError as error:
            sys.exit(f"shard oracle: {_settings_errors(error)}")
        run_oracle(settings)
    elif args.command == "scout":
        run_scout_command(args)
    elif args.command == "keys":
        run_keys(args)
