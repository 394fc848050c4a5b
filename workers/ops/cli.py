"""The ``intercom-sync`` command line: dev stack, checks, status and the dead-letter store."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from workers.jobs import routing
from workers.sandbox.send import INTERCOM_TOPICS
from workers.settings import Settings, SettingsError, get_settings, load_settings, redact_url

Handler = Callable[[argparse.Namespace, Settings], int]


def _services(settings: Settings):
    from workers.clients.services import Services

    return Services(settings)


def _cmd_dev(args: argparse.Namespace, settings: Settings | None) -> int:
    from workers.ops.devstack import run_dev

    return run_dev(settings, port=args.port, concurrency=args.concurrency, sandbox=args.sandbox)


def _cmd_send_test_webhook(args: argparse.Namespace, settings: Settings) -> int:
    import requests

    from workers.ops import devstate
    from workers.sandbox import send

    # The stack it targets decides the secrets: a sandbox verifies with its own, whatever the
    # environment says; any other receiver with the configured ones.
    target = devstate.find(args.receiver)
    base = (args.receiver or (target.receiver if target else "http://127.0.0.1:8000")).rstrip("/")
    if target is not None:
        print(f"intercom-sync: sending to {target.describe()}", file=sys.stderr)
    signing = load_settings(target.sandbox_env) if target and target.sandbox else settings
    fakes = target.sandbox_env if target and target.sandbox else {}
    if args.source == "sanity":
        secrets, variable = signing.SANITY_WEBHOOK_SECRET, "SANITY_WEBHOOK_SECRET"
        fake = None if args.no_seed else fakes.get("SANITY_API_BASE")
    else:
        secrets, variable = signing.INTERCOM_CLIENT_SECRET, "INTERCOM_CLIENT_SECRET"
        fake = None if args.no_seed else fakes.get("INTERCOM_API_BASE")
    if not secrets:
        print(f"intercom-sync: no secret to sign with: set {variable}, or start "
              "`intercom-sync dev --sandbox` and send to it", file=sys.stderr)  # fmt: skip
        return 2
    secret = secrets[0].reveal()
    try:
        if args.source == "sanity":
            answer = send.send_sanity(base, secret, sanity_url=fake, title=args.title)
        else:
            articles = None
            if not args.no_seed and args.topic.startswith("conversation."):
                articles = fakes.get("SANITY_API_BASE")  # the article a triage reply links to
            answer = send.send_intercom(base, secret, intercom_url=fake, topic=args.topic,
                                        sanity_url=articles)  # fmt: skip
    except requests.RequestException as exc:
        print(f"intercom-sync: the receiver at {base} did not answer ({type(exc).__name__})",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"{answer.status_code} {answer.text}")
    return 0 if answer.ok else 1


def _cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from workers.ops.operations import run_checks

    checks = run_checks(_services(settings))
    for check in checks:
        print(check.line())
    return 1 if any(c.ok is False for c in checks) else 0


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from workers.ops.operations import status_lines

    for line in status_lines(_services(settings)):
        print(line)
    return 0


# An argument that names a file (a path separator or a file extension, no spaces) is read as
# one; text such as "charged twice" or "refund" is matched as text.
_PATH_LIKE = re.compile(r"^[^\s]*(/|\\)[^\s]*$|^[^\s/\\]+\.[A-Za-z0-9]{1,5}$")


def _rules_input_problem(value: str) -> str | None:
    """Why ``value`` cannot be used as ``rules test`` input (a file that is not there or does
    not parse), or None."""
    if "\n" in value or not _PATH_LIKE.match(value):
        return None
    path = Path(value)
    if not path.is_file():
        return f"{value}: no such file (pass the text itself in quotes to match text)"
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"{value}: cannot read it ({type(exc).__name__})"
    if path.suffix.lower() == ".json":
        try:
            json.loads(content)
        except ValueError as exc:
            return f"{value}: not valid JSON ({exc})"
    return None


def _cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    from workers.conversations.rules import RulesError, explain_cli
    from workers.conversations.triage import actions_cli

    rules_path = args.rules or settings.RULES_PATH
    if not rules_path:
        print("intercom-sync: no rules file; pass --rules PATH or set RULES_PATH", file=sys.stderr)
        return 2
    if not Path(rules_path).is_file():
        print(f"intercom-sync: {rules_path}: no such rules file", file=sys.stderr)
        return 2
    problem = _rules_input_problem(args.file_or_text)
    if problem:
        print(f"intercom-sync: {problem}", file=sys.stderr)
        return 2
    try:
        print(explain_cli(rules_path, args.file_or_text))
        actions = actions_cli(rules_path, args.file_or_text)
        if actions:
            print(actions)
    except RulesError as exc:
        print(f"intercom-sync: {rules_path}: rules file is invalid:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    return 0


def _cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from workers.articles.backfill import run_backfill

    try:
        return run_backfill(_services(settings), since=args.since, dry=args.dry_run)
    except ValueError as exc:
        print(f"intercom-sync: {exc}", file=sys.stderr)
        return 2


def _cmd_articles(args: argparse.Namespace, settings: Settings) -> int:
    from workers.articles.preview import run_preview
    from workers.jobs.errors import ServiceError

    try:
        return run_preview(_services(settings), args.document_id, sys.stdout)
    except ServiceError as exc:
        print(f"intercom-sync: could not read {args.document_id!r}: {exc}", file=sys.stderr)
        return 1


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} Refusing without a terminal; pass --yes.", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    store = services.dead_letters
    if getattr(args, "task", None) and args.task not in routing.TASK_NAMES:
        print(f"intercom-sync: no task {args.task!r}; the tasks are: "
              f"{', '.join(sorted(routing.TASK_NAMES))}", file=sys.stderr)  # fmt: skip
        return 2
    if args.dlq_command == "list":
        entries = store.list(args.task)
        for entry in entries:
            print(json.dumps(store.as_dict(entry)) if args.json else entry.line())
        if not args.json:
            print(f"{len(entries)} parked job(s)", file=sys.stderr)
        return 0
    if args.dlq_command == "show":
        entry = store.get(args.id)
        if entry is None:
            print(f"intercom-sync: no parked job with id {args.id}", file=sys.stderr)
            return 1
        shown = store.as_dict(entry)
        for name in ("first_failed_at", "last_failed_at"):  # readable, in UTC
            shown[name] = _iso_utc(shown[name])
        print(json.dumps(shown, indent=2))
        return 0
    selected = _select(store, args)
    if selected is None:
        return 1
    if args.dlq_command == "replay":
        total = len(selected)
        for number, entry in enumerate(selected, 1):
            try:
                task_id = store.replay(entry, services.enqueuer)
            except KeyError:
                print(f"[{number}/{total}] kept {entry.id}: no queue for task {entry.task!r}",
                      file=sys.stderr)  # fmt: skip
                continue
            call = f"{entry.task}({', '.join(map(str, entry.args))})"
            print(f"[{number}/{total}] replayed {entry.id} {call} as task {task_id}")
        print(f"{total} job(s) replayed", file=sys.stderr)
        return 0
    what = f"{len(selected)} parked job(s)"
    if not _confirm(f"Purge {what}?", args.yes):
        return 1
    removed = sum(int(store.remove(entry.id)) for entry in selected)
    print(f"{removed} job(s) purged")
    return 0


def _iso_utc(timestamp: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")  # fmt: skip


def _select(store, args: argparse.Namespace):
    """The entries named by ``ID``, ``--task NAME`` or ``--all``; None (and a message) if none."""
    if args.id:
        entry = store.get(args.id)
        if entry is None:
            print(f"intercom-sync: no parked job with id {args.id}", file=sys.stderr)
            return None
        return [entry]
    if args.task or args.all:
        return store.list(args.task)
    print("intercom-sync: name a job ID, --task NAME or --all", file=sys.stderr)
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intercom-sync",
        description="Keep Intercom in step with Sanity content and your own data.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Commands that talk to a stack: which one is decided in main() (see _attach).
    dev_option = argparse.ArgumentParser(add_help=False)
    dev_option.add_argument(
        "--dev", action="store_true",
        help="talk to the running `intercom-sync dev` stack even when REDIS_URL is set "
        "(without --dev it is used only when REDIS_URL is unset)",
    )  # fmt: skip

    dev = sub.add_parser(
        "dev",
        help="run receiver, worker and beat in one terminal",
        description="Run the receiver (gunicorn), a Celery worker and beat together, with "
        "their logs in this terminal. When REDIS_URL is unset an embedded Redis is started "
        "and stopped with them. Ctrl-C stops everything.",
    )
    dev.add_argument("--port", type=int, default=8000, help="receiver port (default 8000)")
    dev.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    dev.add_argument(
        "--sandbox",
        action="store_true",
        help="also run local fakes of Intercom (port+1) and Sanity (port+2) and use them",
    )
    dev.set_defaults(handler=_cmd_dev)

    send = sub.add_parser(
        "send-test-webhook",
        help="sign and send a sample webhook to a running receiver",
        description="Sign a sample event as Intercom or Sanity would and send it to the "
        "receiver. Against 'intercom-sync dev --sandbox', the sample data is first stored in "
        "the sandbox's fake Intercom or Sanity (ports receiver+1 and +2) so the job can run.",
    )
    send.add_argument("source", choices=["sanity", "intercom"], help="which vendor to imitate")
    send.add_argument("--receiver", default=None,
                      help="receiver base URL (default: the running `intercom-sync dev`, else "
                      "http://127.0.0.1:8000)")
    send.add_argument("--topic", default="conversation.user.created",
                      choices=sorted(INTERCOM_TOPICS),
                      help="Intercom topic (default conversation.user.created)")
    send.add_argument("--title", default="How refunds work", help="title of the sample article")
    send.add_argument("--no-seed", action="store_true",
                      help="do not store sample data in the sandbox fakes first")
    send.set_defaults(handler=_cmd_send_test_webhook)

    check = sub.add_parser(
        "check", parents=[dev_option],
        help="verify settings, Redis, Intercom and Sanity",
        description="One line per check (settings, Redis, Intercom GET /me, a Sanity query); "
        "exits 1 when any check fails.",
    )
    check.set_defaults(handler=_cmd_check)

    status = sub.add_parser(
        "status", parents=[dev_option],
        help="queue depths, dead letters, rate-limit budget, last successes",
        description="Print queue depths, the number of parked jobs, the Intercom budget left "
        "in the current window and when each task last succeeded.",
    )
    status.set_defaults(handler=_cmd_status)

    rules = sub.add_parser(
        "rules",
        help="try the tagging rules",
        description="Tagging rules (RULES_PATH): see which tags a text would get, and why.",
    )
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    rules_test = rules_sub.add_parser(
        "test", parents=[dev_option],
        help="which tags would apply to a text or conversation, and why",
        description="Evaluate the rules on FILE_OR_TEXT and print, per rule, whether it "
        "matched and which condition held or failed, then the tags that would be applied "
        "and the matching rules' actions with their placeholders filled in. "
        "FILE_OR_TEXT is a conversation or notification JSON file (as Intercom sends or "
        "answers it; only customer-written text counts), any other text file, or the text "
        "itself. Contact and company conditions see no data here. Makes no Intercom call.",
    )
    rules_test.add_argument("file_or_text", metavar="FILE_OR_TEXT",
                            help="a JSON conversation/notification file, a text file, or text")
    rules_test.add_argument("--rules", metavar="PATH",
                            help="rules file (YAML or JSON; default: RULES_PATH)")
    rules.set_defaults(handler=_cmd_rules)

    dlq = sub.add_parser(
        "dlq",
        help="list, show, replay or purge parked jobs",
        description="The dead-letter store: jobs that failed permanently or ran out of retries.",
    )
    dlq_sub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    dlq_list = dlq_sub.add_parser("list", help="one line per parked job", parents=[dev_option],
                                  description="One line per parked job: id, task, arguments, "
                                  "error.")  # fmt: skip
    dlq_list.add_argument("--task", help="only jobs of this task name")
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per line")
    dlq_show = dlq_sub.add_parser("show", help="everything recorded about one job",
                                  parents=[dev_option],
                                  description="Everything recorded about one parked job.")
    dlq_show.add_argument("id", help="the job id from 'dlq list'")
    for action, text in (("replay", "put jobs back on their queues (safe: every task re-reads "
                                    "current state)"),
                         ("purge", "delete parked jobs (asks first unless --yes)")):  # fmt: skip
        cmd = dlq_sub.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".",
                                 parents=[dev_option])  # fmt: skip
        cmd.add_argument("id", nargs="?", help="one job id from 'dlq list'")
        cmd.add_argument("--task", help="every parked job of this task name")
        cmd.add_argument("--all", action="store_true", help="every parked job")
        if action == "purge":
            cmd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    dlq.set_defaults(handler=_cmd_dlq)

    backfill = sub.add_parser(
        "backfill",
        help="queue a sync of every Sanity article document",
        description="Queue one sync job per document (all, or those changed since a date); "
        "the workers do the rest under the shared Intercom rate limit.",
    )
    backfill_sub = backfill.add_subparsers(dest="backfill_what", metavar="WHAT", required=True)
    articles = backfill_sub.add_parser(
        "articles", parents=[dev_option], help="Sanity article documents -> Intercom articles",
        description="Page through every SANITY_ARTICLE_TYPE document (or those changed since "
        "--since) and queue articles.sync for each, with progress on stderr. --dry-run queues "
        "nothing and calls no Intercom API: it prints whether each document's article would be "
        "created, updated or skipped, and the totals.",
    )  # fmt: skip
    articles.add_argument("--since", metavar="DATE",
                          help="only documents changed after DATE (YYYY-MM-DD or ISO date-time)")
    articles.add_argument("--dry-run", action="store_true",
                          help="print what each sync would do; queue nothing")
    backfill.set_defaults(handler=_cmd_backfill)

    articles_cmd = sub.add_parser(
        "articles",
        help="see what article sync would send for a document",
        description="Article tools that write nothing.",
    )
    articles_sub = articles_cmd.add_subparsers(dest="articles_command", metavar="ACTION",
                                               required=True)  # fmt: skip
    preview = articles_sub.add_parser(
        "preview", help="the HTML a sync would send and how it differs from the document",
        description="Read DOCUMENT_ID (and its translation group) from Sanity and print, per "
        "locale, the article body a sync would send to Intercom, each change to the content "
        "(headings mapped to h2, formatting Intercom cannot hold, flattened lists, skipped "
        "block types ...) and any break of Intercom's article rules. Calls no Intercom API "
        "and writes nothing.",
    )  # fmt: skip
    preview.add_argument("document_id", metavar="DOCUMENT_ID", help="a Sanity document id")
    articles_cmd.set_defaults(handler=_cmd_articles)
    return parser


def load_env_file(path: Path | None = None) -> bool:
    """Read ``.env`` from the working directory into the environment; the environment wins
    (a variable already set, even to an empty value, is kept). True when a file was read."""
    from dotenv import load_dotenv

    path = Path.cwd() / ".env" if path is None else path
    return path.is_file() and load_dotenv(path, override=False)


def _attach(args: argparse.Namespace, settings: Settings, redis_source: str) -> Settings:
    """The settings a stack command uses, and one line on stderr saying which stack it is.

    Precedence: ``REDIS_URL`` from the environment, then from ``.env``, then a running
    ``intercom-sync dev`` (``--dev`` picks the dev stack whatever ``REDIS_URL`` says). A sandbox
    stack brings all its settings (its fakes, tokens, rules), since that is what its workers
    run with; a plain dev stack brings its Redis.
    """
    from workers.ops import devstate

    if settings.REDIS_URL and not getattr(args, "dev", False):
        print(f"intercom-sync: using Redis {redact_url(settings.REDIS_URL)} (REDIS_URL from "
              f"{redis_source})", file=sys.stderr)  # fmt: skip
        return settings
    stack = devstate.find()
    if stack is None:
        if getattr(args, "dev", False):
            raise SettingsError("--dev: no `intercom-sync dev` is running for this user")
        return settings  # REDIS_URL unset: commands that need Redis say so
    print(f"intercom-sync: using {stack.describe()}, Redis {stack.redis_url}", file=sys.stderr)
    if stack.sandbox:
        return load_settings(stack.sandbox_env)
    return dataclasses.replace(settings, REDIS_URL=stack.redis_url)


# Commands that talk to a stack, so _attach decides which one.
STACK_COMMANDS = ("check", "status", "dlq", "backfill", "rules")


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    redis_source = "the environment" if os.environ.get("REDIS_URL", "").strip() else ".env"
    load_env_file()
    handler: Handler = args.handler
    if args.command == "dev" and args.sandbox:
        # Sealed: the sandbox reads none of the user's settings but LOG_LEVEL and LOG_FORMAT.
        try:
            return handler(args, None)  # type: ignore[arg-type]
        except SettingsError as exc:
            print(f"intercom-sync: invalid setting: {exc}", file=sys.stderr)
            return 2
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"intercom-sync: invalid setting: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command in STACK_COMMANDS:
            settings = _attach(args, settings, redis_source)
        return handler(args, settings)
    except SettingsError as exc:
        print(f"intercom-sync: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"intercom-sync: Redis is unreachable ({type(exc).__name__}); check REDIS_URL",
              file=sys.stderr)  # fmt: skip
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``status | head``): stop quietly, as other Unix tools do.
        # Python's advice: point stdout at devnull so the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    return code


if __name__ == "__main__":
    sys.exit(main())
