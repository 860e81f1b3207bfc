"""Lint every IAM policy document the roles render, with parliament (unknown actions, bad resources,
wildcards), and fail on any finding. Run by `make lint`."""

from __future__ import annotations

import json

import jinja2
from parliament import analyze_policy_string

from sqs_fleet import REPO

ACCOUNT = "123456789012"
# Representative values for the variables the templates use.
SAMPLE = {
    "aws_partition": "aws",
    "aws_region": "eu-west-1",
    "stack_prefix": "sqs-fleet-prod",
    "stack_group_name": "sqs-fleet-prod-workers",
    "stack_consumer_role": "sqs-fleet-prod-consumer",
    "stack_producer_role": "sqs-fleet-prod-producer",
    "stack_account_id": ACCOUNT,
    "stack_queue_name": "sqs-fleet-prod-vehicles",
    "stack_queue_arn": f"arn:aws:sqs:eu-west-1:{ACCOUNT}:sqs-fleet-prod-vehicles",
    "stack_dead_letter_queue_name": "sqs-fleet-prod-vehicles-dlq",
    "stack_dead_letter_queue_arn": f"arn:aws:sqs:eu-west-1:{ACCOUNT}:sqs-fleet-prod-vehicles-dlq",
    "stack_log_group_arn": f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/sqs-fleet/prod/consumer",
    "stack_consumer_role_arn": f"arn:aws:iam::{ACCOUNT}:role/sqs-fleet-prod-consumer",
    "stack_producer_role_arn": f"arn:aws:iam::{ACCOUNT}:role/sqs-fleet-prod-producer",
    "identity_producer_trusted_principals": [],
    "identity_agent_metric_namespace": "CWAgent",
    # The roles' own inputs, as site.yml passes them from the names above.
    "identity_queue_arn": f"arn:aws:sqs:eu-west-1:{ACCOUNT}:sqs-fleet-prod-vehicles",
    "identity_log_group_arn": f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/sqs-fleet/prod/consumer",
    "identity_group_arn": f"arn:aws:autoscaling:eu-west-1:{ACCOUNT}:autoScalingGroup:*:"
                          "autoScalingGroupName/sqs-fleet-prod-workers",
    "queue_name": "sqs-fleet-prod-vehicles",
    "queue_arn": f"arn:aws:sqs:eu-west-1:{ACCOUNT}:sqs-fleet-prod-vehicles",
    "queue_dead_letter_name": "sqs-fleet-prod-vehicles-dlq",
    "queue_dead_letter_arn": f"arn:aws:sqs:eu-west-1:{ACCOUNT}:sqs-fleet-prod-vehicles-dlq",
    "queue_consumer_role_arn": f"arn:aws:iam::{ACCOUNT}:role/sqs-fleet-prod-consumer",
    "queue_producer_role_arn": f"arn:aws:iam::{ACCOUNT}:role/sqs-fleet-prod-producer",
}
# Resource policies carry a Principal: parliament reads them as such.
POLICIES = {
    "roles/identity/templates/consumer-policy.json.j2": False,
    "roles/identity/templates/producer-policy.json.j2": False,
    "roles/queue/templates/queue-policy.json.j2": True,
    "roles/queue/templates/dead-letter-policy.json.j2": True,
    "policies/deployer-policy.json.j2": False,
}
# Findings a policy carries by design, each narrowed to what it names. The deployer creates the stack's roles
# and policies (permissions management) and passes the workers' role to the instances it launches.
ACCEPTED = {
    "policies/deployer-policy.json.j2": {
        ("PERMISSIONS_MANAGEMENT_ACTIONS", None),
        ("PRIVILEGE_ESCALATION", "CreateNewPolicyVersion"),  # the stack's own policies only
        ("PRIVILEGE_ESCALATION", "CreateEC2WithExistingIP"),  # iam:PassRole on the workers' role only
    },
}


def accepted(path: str, issue: str, location: object) -> bool:
    kind = location.get("type") if isinstance(location, dict) else None
    return (issue, kind) in ACCEPTED.get(path, set())


def render(path: str) -> str:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701  # nosec B701
    environment.filters["to_json"] = json.dumps
    return environment.from_string((REPO / path).read_text()).render(SAMPLE)


def main() -> int:
    failures = 0
    for path, is_resource_policy in POLICIES.items():
        document = render(path)
        json.loads(document)  # a template that renders invalid JSON fails here, by name
        findings = analyze_policy_string(document, include_community_auditors=True,
                                         ignore_private_auditors=True).findings
        # Resource-based policies legitimately name a Principal; besides ACCEPTED, every other finding counts.
        findings = [f for f in findings if not (is_resource_policy and f.issue == "RESOURCE_POLICY_PRINCIPAL")
                    and not accepted(path, f.issue, f.location)]
        for finding in findings:
            print(f"{path}: {finding.issue} {finding.detail} {finding.location}")
        failures += len(findings)
        print(f"{path}: {'ok' if not findings else f'{len(findings)} finding(s)'}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
