"""The `podpath cluster` verb: `doctor` before `vagrant up`, `report` after a failed boot.

podpath/cli.py adds it with register(sub); it follows that file's exit codes
(0 ok, 1 a check failed, 2 bad usage or input).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from podpath.cluster import doctor

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        needs = doctor.load_needs()
    except (OSError, KeyError, TypeError, ValueError) as exc:
        print(f"podpath: cannot read what the lab needs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    facts = doctor.gather(args.provider)
    findings = doctor.evaluate(facts, needs)
    if args.json:
        print(json.dumps(doctor.as_json(findings, facts, needs), indent=2))
    else:
        print(doctor.render(findings))
    return EXIT_FAILED if any(f.status == doctor.FAIL for f in findings) else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from podpath.cluster import report

    try:
        path = report.write(Path(args.output) if args.output else None, logs=[Path(p) for p in args.log],
                            provider=args.provider, timeout=args.timeout)
    except OSError as exc:
        print(f"podpath: cannot write the report: {exc}; pass another file with -o", file=sys.stderr)
        return EXIT_USAGE
    print(f"report written to {path}: attach it to your question (secrets are left out)")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add `cluster doctor` and `cluster report` to podpath's subparsers."""
    cluster = sub.add_parser("cluster",
                             help="the cluster lab on a laptop: doctor before vagrant up, report after a failure")
    verbs = cluster.add_subparsers(dest="cluster_verb", required=True)
    check = verbs.add_parser("doctor", help="check this machine before vagrant up (one line per check)")
    check.add_argument("--provider", choices=doctor.PROVIDERS,
                       help="the provider to check (default: the one vagrant up would use)")
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    check.set_defaults(func=cmd_doctor)
    gather = verbs.add_parser("report", help="gather versions, the failed task and the cluster's state into one file")
    gather.add_argument("-o", "--output", help="the file to write (default: build/cluster/report-<time>.md)")
    gather.add_argument("--log", action="append", default=[],
                        help="a saved provisioning log to search for the failed task (vagrant up 2>&1 | tee FILE); "
                             "repeatable")
    gather.add_argument("--provider", choices=doctor.PROVIDERS, help="the provider (default: as the doctor picks it)")
    gather.add_argument("--timeout", type=float, default=60, help="seconds allowed for each command (default 60)")
    gather.set_defaults(func=cmd_report)


def main(argv: list[str] | None = None) -> int:
    """`python -m podpath.cluster doctor|report ...`: the same verbs without the rest of podpath."""
    parser = argparse.ArgumentParser(prog="podpath")
    register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["cluster", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
