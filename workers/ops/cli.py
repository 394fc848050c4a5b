"""The ``intercom-sync`` command line: dev stack, checks, status and the dead-letter store."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import redis

from workers.sandbox.send import INTERCOM_TOPICS
from workers.settings import Settings, SettingsError, get_settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _services(settings: Settings):
    from workers.clients.services import Services

    return Services(settings)


def _cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from workers.ops.devstack import run_dev

    return run_dev(settings, port=args.port, concurrency=args.concurrency, sandbox=args.sandbox)


def _cmd_send_test_webhook(args: argparse.Namespace, settings: Settings) -> int:
    import requests

    from workers.sandbox import send, stack

    base = args.receiver.rstrip("/")
    port = int(base.rsplit(":", 1)[1]) if base.rsplit(":", 1)[-1].isdigit() else 8000
    try:
        if args.source == "sanity":
            secret = send.default_secret(settings.SANITY_WEBHOOK_SECRET,
                                         stack.SANITY_WEBHOOK_SECRET)  # fmt: skip
            fake = None if args.no_seed else f"http://127.0.0.1:{port + 2}"
            answer = send.send_sanity(base, secret, sanity_url=fake, title=args.title)
        else:
            secret = send.default_secret(settings.INTERCOM_CLIENT_SECRET,
                                         stack.INTERCOM_CLIENT_SECRET)  # fmt: skip
            fake = None if args.no_seed else f"http://127.0.0.1:{port + 1}"
            articles = None if args.no_seed or not args.topic.startswith("conversation.") \
                else f"http://127.0.0.1:{port + 2}"  # fmt: skip
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


def _cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    from workers.conversations.rules import RulesError, explain_cli
    from workers.conversations.triage import actions_cli

    rules_path = args.rules or settings.RULES_PATH
    if not rules_path:
        print("intercom-sync: no rules file; pass --rules PATH or set RULES_PATH", file=sys.stderr)
        return 2
    try:
        print(explain_cli(rules_path, args.file_or_text))
        actions = actions_cli(rules_path, args.file_or_text)
        if actions:
            print(actions)
    except RulesError as exc:
        print(f"intercom-sync: {exc.source or rules_path}: rules file is invalid:", file=sys.stderr)
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
        print(json.dumps(store.as_dict(entry), indent=2))
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
    send.add_argument("--receiver", default="http://127.0.0.1:8000",
                      help="receiver base URL (default http://127.0.0.1:8000)")
    send.add_argument("--topic", default="conversation.user.created",
                      choices=sorted(INTERCOM_TOPICS),
                      help="Intercom topic (default conversation.user.created)")
    send.add_argument("--title", default="How refunds work", help="title of the sample article")
    send.add_argument("--no-seed", action="store_true",
                      help="do not store sample data in the sandbox fakes first")
    send.set_defaults(handler=_cmd_send_test_webhook)

    check = sub.add_parser(
        "check",
        help="verify settings, Redis, Intercom and Sanity",
        description="One line per check (settings, Redis, Intercom GET /me, a Sanity query); "
        "exits 1 when any check fails.",
    )
    check.set_defaults(handler=_cmd_check)

    status = sub.add_parser(
        "status",
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
        "test",
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
    dlq_list = dlq_sub.add_parser("list", help="one line per parked job",
                                  description="One line per parked job: id, task, arguments, "
                                  "error.")  # fmt: skip
    dlq_list.add_argument("--task", help="only jobs of this task name")
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per line")
    dlq_show = dlq_sub.add_parser("show", help="everything recorded about one job",
                                  description="Everything recorded about one parked job.")
    dlq_show.add_argument("id", help="the job id from 'dlq list'")
    for action, text in (("replay", "put jobs back on their queues"),
                         ("purge", "delete parked jobs (asks first unless --yes)")):  # fmt: skip
        cmd = dlq_sub.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        cmd.add_argument("id", nargs="?", help="one job id from 'dlq list'")
        cmd.add_argument("--task", help="every parked job of this task name")
        cmd.add_argument("--all", action="store_true", help="every parked job")
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
        "articles", help="Sanity article documents -> Intercom articles",
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"intercom-sync: invalid setting: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except SettingsError as exc:
        print(f"intercom-sync: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"intercom-sync: Redis is unreachable ({type(exc).__name__}); check REDIS_URL",
              file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
