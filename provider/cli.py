"""The `countersign` command: serve, verify images from a shell, validate a configuration.

    countersign serve --config FILE
    countersign verify IMAGE... [--config FILE] [--output text|json] [--timeout SECONDS]
    countersign config validate FILE
    countersign plugin list
    countersign plugin check TYPE [--options FILE.yaml] [--passes-plain-image]

`verify` exits 0 when every image is allowed, 1 when any is denied (or not a valid reference), and 2
when any is undecided or the configuration is unusable. `plugin check` runs the conformance checker of
`verifiers.testing.conformance` on the verifier type TYPE built with the options in FILE (a YAML mapping,
what goes under `options:` in the configuration; relative paths in it are relative to FILE): it prints
the findings and exits 0 when every check holds, 1 when any fails, 2 when the options cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from provider import __version__
from provider.config import Config, ConfigError, load_config
from provider.engine import Engine, build_verifiers
from provider.outcome import Decided, Invalid, Outcome, UndecidedKey
from verifiers.base import option_paths_relative_to
from verifiers.plugins import PluginError, available_types
from verifiers.testing.conformance import check_conformance, failures, format_findings

EXIT_ALLOWED, EXIT_DENIED, EXIT_UNDECIDED = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="countersign", description="Image verification for OPA Gatekeeper.")
    p.add_argument("--version", action="version", version=f"countersign {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTPS external-data provider")
    serve.add_argument("--config", type=Path, required=True)
    serve.add_argument(
        "--kubeconfig",
        type=Path,
        help="out of cluster: the kubeconfig (overrides kubernetes.kubeconfig)",
    )

    verify = sub.add_parser("verify", help="verify images and explain the verdicts")
    verify.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image references, optionally [namespace]image"
    )
    verify.add_argument("--config", type=Path, required=True)
    verify.add_argument("--output", choices=["text", "json"], default="text")
    verify.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    validate = config_sub.add_parser("validate", help="validate a configuration file")
    validate.add_argument("file", type=Path)

    plugin = sub.add_parser("plugin", help="tools for verifier plugins")
    plugin_sub = plugin.add_subparsers(dest="plugin_command", required=True)
    plugin_sub.add_parser("list", help="list the verifier types installed")
    check = plugin_sub.add_parser("check", help="run the conformance checks on a verifier type")
    check.add_argument("type", metavar="TYPE")
    check.add_argument("--options", type=Path, help="a YAML file with the verifier's options")
    check.add_argument("--name", default="conformance", help="the verifier's name (default conformance)")
    check.add_argument(
        "--passes-plain-image",
        action="store_true",
        help="the verifier is meant to pass an unsigned image with no referrers (named by tag)",
    )
    check.add_argument("--deadline", type=float, default=2.0, help="seconds per verification (default 2)")
    return p


def _plugin(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.plugin_command == "list":
        try:
            types = available_types()
        except PluginError as e:
            print(f"countersign: {e}", file=err)
            return EXIT_UNDECIDED
        for name, target in sorted(types.items()):
            print(f"{name:<24} {target}", file=out)
        return EXIT_ALLOWED
    options: object = {}
    base = Path.cwd()
    if args.options is not None:
        try:
            options = yaml.safe_load(args.options.read_text("utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            print(f"countersign: {args.options}: cannot be read: {e}", file=err)
            return EXIT_UNDECIDED
        base = args.options.resolve().parent
    if not isinstance(options, dict):
        print(f"countersign: {args.options}: expected a mapping of options", file=err)
        return EXIT_UNDECIDED
    with option_paths_relative_to(base):
        findings = asyncio.run(
            check_conformance(
                args.type,
                options,
                name=args.name,
                passes_plain_image=args.passes_plain_image,
                deadline=args.deadline,
            )
        )
    print(format_findings(findings), file=out)
    return EXIT_DENIED if failures(findings) else EXIT_ALLOWED


def _load(path: Path, err: TextIO) -> Config | None:
    try:
        config = load_config(path)
        build_verifiers(config)  # verifier options are validated by the verifiers themselves
    except ConfigError as e:
        print(f"{path}: invalid configuration: {e}", file=err)
        return None
    return config


def render_text(key: str, outcome: Outcome) -> str:
    if isinstance(outcome, Invalid):
        return f"INVALID    {key}\n  {outcome.error}\n"
    if isinstance(outcome, UndecidedKey):
        return f"UNDECIDED  {key}\n  {outcome.message} [{outcome.reason}]\n"
    value: dict[str, Any] = outcome.value
    verdict = "ALLOWED" if value["allowed"] else "DENIED"
    lines = [f"{verdict:<10} {key}"]
    lines.append(f"  digest:  {value['digest'] or '(not resolved)'}")
    lines.append(f"  policy:  {value['policy'] or '(none)'}")
    for v in value["verifiers"]:
        mark = "pass" if v["passed"] else "FAIL"
        lines.append(f"  [{mark}] {v['name']} ({v['type']}): {v['message']} [{v['reason']}]")
    for reason in value["reasons"]:
        lines.append(f"  reason:  {reason}")
    return "\n".join(lines) + "\n"


def _as_json(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Decided):
        return {"value": outcome.value}
    if isinstance(outcome, Invalid):
        return {"error": outcome.error}
    return {"undecided": {"reason": outcome.reason, "message": outcome.message}}


async def _verify(config: Config, images: Sequence[str], budget: float) -> dict[str, Outcome]:
    engine = await Engine.create(config)
    try:
        return await engine.verify(images, budget)
    finally:
        await engine.close()


def exit_code(outcomes: dict[str, Outcome]) -> int:
    if any(isinstance(o, UndecidedKey) for o in outcomes.values()):
        return EXIT_UNDECIDED
    if any(
        isinstance(o, Invalid) or not o.value["allowed"]
        for o in outcomes.values()
        if not isinstance(o, UndecidedKey)
    ):
        return EXIT_DENIED
    return EXIT_ALLOWED


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=err
    )
    if args.command == "plugin":
        return _plugin(args, out, err)
    if args.command == "config":
        config = _load(args.file, err)
        if config is None:
            return EXIT_UNDECIDED
        print(f"{args.file}: valid (fingerprint {config.fingerprint})", file=out)
        return EXIT_ALLOWED
    config = _load(args.config, err)
    if config is None:
        return EXIT_UNDECIDED
    if args.command == "serve":
        from provider.server import run_server

        try:
            asyncio.run(run_server(config, config_path=args.config, kubeconfig=args.kubeconfig))
        except (ValueError, OSError, ssl.SSLError) as e:  # bad TLS files, docker configs, CA files, port
            print(f"countersign: cannot serve: {e}", file=err)
            return EXIT_UNDECIDED
        return EXIT_ALLOWED
    try:
        outcomes = asyncio.run(_verify(config, args.images, args.timeout))
    except (ValueError, OSError) as e:
        print(f"countersign: {e}", file=err)
        return EXIT_UNDECIDED
    if args.output == "json":
        json.dump({k: _as_json(outcomes[k]) for k in dict.fromkeys(args.images)}, out, indent=2)
        out.write("\n")
    else:
        for key in dict.fromkeys(args.images):
            out.write(render_text(key, outcomes[key]))
    return exit_code(outcomes)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
