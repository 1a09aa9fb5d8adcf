"""`shard` command line. `shard oracle` flags are derived from `OracleSettings`, so every flag
is also a `SHARD_*` environment variable (a flag given on the command line wins)."""

import argparse
import logging
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from pydantic.fields import FieldInfo

from shard import __version__
from shard.config import OracleSettings


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_settings_flags(parser: argparse.ArgumentParser, fields: dict[str, FieldInfo]) -> None:
    """One flag per settings field; list fields repeat (`--served-model-name a --served-...`)."""
    for name, info in fields.items():
        annotation = info.annotation
        args = typing.get_args(annotation)
        origin = typing.get_origin(annotation)
        help_text = info.description or ""
        if origin is list:
            parser.add_argument(_flag(name), dest=name, action="append", help=help_text)
            continue
        kinds = [a for a in args if a is not type(None)] if origin is types.UnionType else []
        kind: Any = kinds[0] if kinds else annotation
        parser.add_argument(_flag(name), dest=name, type=kind, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shard", description="Shard inference oracle")
    parser.add_argument("--version", action="version", version=f"shard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    oracle = commands.add_parser(
        "oracle", help="serve a GGUF model behind the OpenAI Chat Completions API"
    )
    _add_settings_flags(oracle, OracleSettings.model_fields)
    return parser


def settings_from_args(args: argparse.Namespace) -> OracleSettings:
    """Flags given on the command line override the environment; the rest come from it."""
    given = {
        name: value
        for name in OracleSettings.model_fields
        if (value := getattr(args, name, None)) is not None
    }
    return OracleSettings(**given)


def run_oracle(settings: OracleSettings) -> None:
    from shard.api.app import create_app
    from shard.default_model import default_model_path

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    model_path: Path = settings.model or default_model_path()
    if not model_path.is_file():
        sys.exit(f"shard: no model file at {model_path}")
    app = create_app(settings, model_path)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "oracle":
        run_oracle(settings_from_args(args))
