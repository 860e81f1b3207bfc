"""Check API calls against an IAM policy document and print the ones it denies, with why.

    sqs-fleet-check-policy POLICY.json --recording requests.jsonl [--account ID]
    sqs-fleet-check-policy POLICY.json --calls calls.txt       # or - for standard input

A recording is what the emulator writes with MOTO_ENABLE_RECORDING=true and MOTO_RECORDER_FILEPATH=FILE set
where it starts (sqs_fleet.ops.recorded_calls turns each request into the IAM actions it needs). A calls file
has one call a line: `ACTION RESOURCE [KEY=VALUE ...]`, RESOURCE an ARN, `*`, or `-` for the action alone,
each KEY=VALUE a condition key the request sets (repeat a key for several values); `#` starts a comment.
Exit status: 0 when every call is allowed, 1 when some are denied, 2 on bad input.

The evaluator reads Allow statements only (the project's policies have no Deny): Action/NotAction matched
without case, Resource/NotResource with wildcards, conditions with the String/Arn operators (IfExists,
ForAllValues, ForAnyValue). A condition key the request does not set counts as satisfied only in a statement
whose Sid starts with "PermissionOnly" (permissions AWS checks at launch time that no call shows, such as
iam:PassedToService); anywhere else it fails the statement. Which resource types an action takes comes from
the Service Authorization Reference data parliament ships: an action that takes none is allowed on "*" only.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERMISSION_ONLY = "PermissionOnly"
NO_RESOURCE_LEVEL = "NoResourceLevelPermissions"


@functools.cache
def resource_types() -> dict[str, frozenset[str]]:
    """'service:action' (lower case) -> the resource types it takes, from the reference parliament ships."""
    import parliament  # the linters' dependency (requirements.txt); only this reads its data

    path = Path(parliament.__file__).with_name("iam_definition.json")
    types = {}
    for service in json.loads(path.read_text()):
        for privilege in service["privileges"]:
            types[f"{service['prefix']}:{privilege['privilege']}".lower()] = frozenset(
                r["resource_type"].rstrip("*") for r in privilege["resource_types"] if r["resource_type"])
    return types


@dataclass(frozen=True)
class Call:
    action: str
    resource: str | None  # None: no resource derived, the action alone is checked
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()
    needed_by: str | None = None  # the call that needs this action without making it

    def describe(self) -> str:
        keys = ", ".join(f"{k}={list(v)}" for k, v in self.context if k != "aws:requestedregion")
        return (f"{self.action} on {self.resource or '(action alone)'}{f' with {keys}' if keys else ''}"
                f"{f' (needed by {self.needed_by})' if self.needed_by else ''}")




def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def operator_matches(operator: str, wanted: list[str], value: str) -> bool | None:
    if operator in ("StringEquals", "ArnEquals"):
        return value in wanted
    if operator in ("StringLike", "ArnLike"):
        return any(wildcard(w, value) for w in wanted)
    return None  # an operator this evaluator does not know


def condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, tuple[str, ...]],
                    permission_only: bool) -> bool:
    for qualified, keys in condition.items():
        quantifier, _, operator = qualified.rpartition(":")
        if_exists = operator.endswith("IfExists")
        operator = operator.removesuffix("IfExists")
        for key, wanted in keys.items():
            values = context.get(key.lower())
            if values is None:
                if quantifier == "ForAllValues" or if_exists:
                    continue  # AWS: an absent key satisfies these
                if permission_only:
                    continue  # set by AWS at launch time, not by any recorded call
                return False
            results = [operator_matches(operator, as_list(wanted), v) for v in values]
            if None in results:
                if permission_only:
                    continue
                return False
            if quantifier == "ForAllValues":
                ok = all(results)
            elif quantifier == "ForAnyValue":
                ok = any(results)
            else:
                ok = bool(results) and all(results)
            if not ok:
                return False
    return True


def statement_allows(statement: dict[str, Any], call: Call) -> bool:
    if statement["Effect"] != "Allow":
        return False
    if "Action" in statement:
        if not any(wildcard(a, call.action, ignore_case=True) for a in as_list(statement["Action"])):
            return False
    elif any(wildcard(a, call.action, ignore_case=True) for a in as_list(statement["NotAction"])):
        return False
    if call.resource is not None:
        if "Resource" in statement:
            if not any(wildcard(r, call.resource) for r in as_list(statement["Resource"])):
                return False
        elif any(wildcard(r, call.resource) for r in as_list(statement["NotResource"])):
            return False
    permission_only = statement.get("Sid", "").startswith(PERMISSION_ONLY)
    return condition_holds(statement.get("Condition", {}), dict(call.context), permission_only)


def allowed(policy: dict[str, Any], call: Call) -> bool:
    return any(statement_allows(s, call) for s in as_list(policy["Statement"]))




def why_denied(policy: dict[str, Any], call: Call) -> str:
    """What in the policy a denied call misses: the action, the resource, or a statement's conditions."""
    statements = [s for s in as_list(policy["Statement"]) if s.get("Effect") == "Allow"]
    for_action = [s for s in statements if statement_allows({**s, "Condition": {}}, Call(call.action, None))]
    if not for_action:
        return "no statement allows the action"
    on_resource = [s for s in for_action if statement_allows({**s, "Condition": {}}, call)]
    sids = ", ".join(str(s.get("Sid", "(no Sid)")) for s in (on_resource or for_action))
    if not on_resource:
        return f"the statements with the action ({sids}) do not name this resource"
    return f"the conditions of {sids} do not hold"


def denied(policy: dict[str, Any], calls: Iterable[Call]) -> list[tuple[Call, str]]:
    """Each distinct call the policy does not allow, with why, in a stable order."""
    return [(call, why_denied(policy, call)) for call in sorted(set(calls), key=Call.describe)
            if not allowed(policy, call)]


def read_policy(path: Path) -> dict[str, Any]:
    try:
        policy = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable JSON policy document: {error}") from None
    if not isinstance(policy, dict) or "Statement" not in policy:
        raise ValueError(f"{path}: not an IAM policy document (no Statement)")
    return policy


def parse_call(line: str) -> Call | None:
    """A call from `ACTION RESOURCE [KEY=VALUE ...]` (RESOURCE `-` for the action alone); None for a blank or
    comment line."""
    words = line.split("#", 1)[0].split()
    if not words:
        return None
    if ":" not in words[0] or len(words) < 2:
        raise ValueError(f"{line.strip()!r}: expected ACTION RESOURCE [KEY=VALUE ...], e.g. "
                         "'sqs:SendMessage arn:aws:sqs:eu-west-1:123456789012:queue'")
    context: dict[str, list[str]] = {}
    for pair in words[2:]:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise ValueError(f"{line.strip()!r}: {pair!r} is not KEY=VALUE")
        context.setdefault(key.lower(), []).append(value)
    return Call(words[0], None if words[1] == "-" else words[1],
                tuple(sorted((k, tuple(v)) for k, v in context.items())))


def read_calls(source: str) -> list[Call]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    parsed = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            call = parse_call(line)
        except ValueError as error:
            raise ValueError(f"{source}:{number}: {error}") from None
        if call is not None:
            parsed.append(call)
    return parsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sqs-fleet-check-policy", description=__doc__.split("\n", 1)[0])
    parser.add_argument("policy", type=Path, help="the IAM policy document (JSON)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--recording", type=Path, help="the emulator's recording of a run (JSON lines)")
    source.add_argument("--calls", help="a file of calls, one `ACTION RESOURCE [KEY=VALUE ...]` a line; - for stdin")
    parser.add_argument("--account", default="123456789012",
                        help="the account the recorded calls' ARNs name (default: the emulator's)")
    args = parser.parse_args(argv)
    try:
        policy = read_policy(args.policy)
        if args.recording is not None:
            from sqs_fleet.ops.recorded_calls import calls_of, read_recording

            if not args.recording.is_file():
                raise ValueError(f"{args.recording}: no such recording")
            requests, _ = read_recording(args.recording)
            calls = [c for entry in requests for c in calls_of(entry, args.account)]
        else:
            calls = read_calls(args.calls)
    except (OSError, ValueError) as error:
        print(f"sqs-fleet-check-policy: {error}", file=sys.stderr)
        return 2
    refused = denied(policy, calls)
    for call, reason in refused:
        print(f"denied: {call.describe()}: {reason}")
    print(f"{len(set(calls))} distinct calls, {len(refused)} denied", file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    raise SystemExit(main())
