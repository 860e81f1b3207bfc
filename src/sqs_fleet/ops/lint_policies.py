"""Lint every IAM policy document the roles render, with parliament (unknown actions, bad resources,
wildcards), and fail on any finding. Run by `make lint`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import jinja2
from parliament import analyze_policy_string

from sqs_fleet import REPO

ACCOUNT = "123456789012"
PUBLISHER_LOG_GROUP_ARN = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/lambda/sqs-fleet-prod-backlog-publisher"
QUEUE_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:sqs-fleet-prod-vehicles"
DLQ_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:sqs-fleet-prod-vehicles-dlq"
CONSUMER_ARN = f"arn:aws:iam::{ACCOUNT}:role/sqs-fleet-prod-consumer"
PRODUCER_ARN = f"arn:aws:iam::{ACCOUNT}:role/sqs-fleet-prod-producer"
# Representative values for the variables the templates use: the playbooks' stack names (deployer policy) and
# the roles' own inputs, including the role variables (vars/main.yml) the templates read.
SAMPLE = {
    "aws_partition": "aws",
    "aws_region": "eu-west-1",
    "stack_prefix": "sqs-fleet-prod",
    "stack_project": "sqs-fleet",
    "stack_environment": "prod",
    "stack_group_name": "sqs-fleet-prod-workers",
    "stack_consumer_role": "sqs-fleet-prod-consumer",
    "stack_producer_role": "sqs-fleet-prod-producer",
    "stack_account_id": ACCOUNT,
    "stack_queue_name": "sqs-fleet-prod-vehicles",
    "stack_queue_arn": QUEUE_ARN,
    "stack_dead_letter_queue_name": "sqs-fleet-prod-vehicles-dlq",
    "stack_dead_letter_queue_arn": DLQ_ARN,
    "stack_log_group_arn": f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/sqs-fleet/prod/consumer",
    "stack_consumer_role_arn": CONSUMER_ARN,
    "stack_producer_role_arn": PRODUCER_ARN,
    "identity_queue_arn": QUEUE_ARN,
    "identity_log_group_arn": f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/sqs-fleet/prod/consumer",
    "identity_producer_trusted_principals": [f"arn:aws:iam::{ACCOUNT}:role/order-service"],
    "identity_agent_metric_namespace": "CWAgent",
    "publisher_queue_arn": QUEUE_ARN,
    "publisher_metric": {"namespace": "SqsFleet", "name": "Backlog"},
    "publisher_log_group_arn": PUBLISHER_LOG_GROUP_ARN,
    "publisher_queue_kms_key_arn": f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "publisher_function_arn": f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:sqs-fleet-prod-backlog-publisher",
    "publisher_account_id": ACCOUNT,
    "publisher__trusted_service": "scheduler.amazonaws.com",
    "stack_publisher_role": "sqs-fleet-prod-backlog-publisher",
    "stack_publisher_schedule_role": "sqs-fleet-prod-backlog-schedule",
    "stack_publisher_function_name": "sqs-fleet-prod-backlog-publisher",
    "stack_publisher_schedule_name": "sqs-fleet-prod-backlog-publisher",
    "stack_publisher_log_group_arn": PUBLISHER_LOG_GROUP_ARN,
    "identity__kms_key_arn": "",
    "identity__sqs_service": "sqs.eu-west-1.amazonaws.com",
}
# The roles' own inputs, as site.yml passes them from the stack's names above.
SAMPLE |= {
    "identity_queue_name": SAMPLE["stack_queue_name"],
    "identity_partition": "aws",
    "identity_group_name": SAMPLE["stack_group_name"],
    "identity_group_arn": f"arn:aws:autoscaling:eu-west-1:{ACCOUNT}:autoScalingGroup:*:"
                          "autoScalingGroupName/sqs-fleet-prod-workers",
    "queue_name": SAMPLE["stack_queue_name"],
    "queue_dead_letter_name": SAMPLE["stack_dead_letter_queue_name"],
    "queue_arn": QUEUE_ARN,
    "queue_dead_letter_arn": DLQ_ARN,
    "queue_consumer_role_arn": CONSUMER_ARN,
    "queue_producer_role_arn": PRODUCER_ARN,
    "broker_auth_parameter": "/sqs-fleet/prod/broker/auth-token",
    "broker_endpoint_parameter": "/sqs-fleet/prod/broker/endpoint",
    "broker_partition": "aws",
    "broker_region": "eu-west-1",
    "broker_account_id": ACCOUNT,
    "publisher_reader": "sqs",
    "publisher_subnet_ids": [],
    "publisher_security_group_ids": [],
    "publisher__arn_prefix": f"arn:aws:{{service}}:eu-west-1:{ACCOUNT}",
    "publisher__ssm_parameter_arns": [f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/sqs-fleet/prod/broker/auth-token",
                                      f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/sqs-fleet/prod/broker/endpoint"],
    "stack_broker_group_id": "sqs-fleet-prod-broker",
    "stack_image_name": "sqs-fleet-worker",
}
# The same templates with the other values that change what they render: a customer managed key (the roles get
# its use through SQS) and no producer role (the queue grants no producer).
VARIANTS: dict[str, dict[str, object]] = {
    "customer managed key": {"identity__kms_key_arn":
                             f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
    "no producer role": {"queue_producer_role_arn": ""},
    # The publisher on a Redis broker: reads the token and address from SSM, from inside the workers' subnets.
    "redis reader in a VPC": {"publisher_reader": "redis", "publisher_subnet_ids": ["subnet-0a", "subnet-0b"],
                              "publisher_security_group_ids": ["sg-0a"]},
}
# Resource policies carry a Principal: parliament reads them as such.
POLICIES = {
    "roles/identity/templates/consumer-policy.json.j2": False,
    "roles/identity/templates/producer-policy.json.j2": False,
    "roles/queue/templates/queue-policy.json.j2": True,
    "roles/queue/templates/dead-letter-policy.json.j2": True,
    "roles/publisher/templates/function-policy.json.j2": False,
    "roles/publisher/templates/schedule-policy.json.j2": False,
    "roles/broker/templates/reader-policy.json.j2": False,
    "policies/deployer-policy.json.j2": False,
}
# Findings a policy carries by design, each narrowed to what it names. The deployer creates the stack's roles
# and policies (permissions management) and passes the workers' role to the instances it launches.
ACCEPTED = {
    "policies/deployer-policy.json.j2": {
        ("PERMISSIONS_MANAGEMENT_ACTIONS", None),
        ("PRIVILEGE_ESCALATION", "CreateNewPolicyVersion"),  # the stack's own policies only
        ("PRIVILEGE_ESCALATION", "CreateEC2WithExistingIP"),  # iam:PassRole on the workers' role only
        # The stack's backlog publisher only, whose role may read one queue and publish one namespace.
        ("PRIVILEGE_ESCALATION", "EditExistingLambdaFunctionWithRole"),
    },
}
# Actions whose resource types a policy grants in separate statements, each with the conditions its types
# support (AWS's pattern for tag conditions on RunInstances): parliament wants every type in each statement.
SPLIT_BY_RESOURCE_TYPE = {
    "policies/deployer-policy.json.j2": {"ec2:RunInstances", "ec2:CreateImage", "ec2:ModifyInstanceAttribute"},
}


def accepted(path: str, issue: str, location: object, detail: object = None) -> bool:
    kind = location.get("type") if isinstance(location, dict) else None
    if issue == "RESOURCE_MISMATCH" and isinstance(detail, list) and detail:
        return all(isinstance(d, dict) and d.get("action") in SPLIT_BY_RESOURCE_TYPE.get(path, set())
                   for d in detail)
    return (issue, kind) in ACCEPTED.get(path, set())


def render(path: str, values: Mapping[str, object] | None = None) -> str:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701  # nosec B701
    environment.filters["to_json"] = json.dumps
    environment.filters["regex_replace"] = lambda value, pattern, replacement: re.sub(pattern, replacement, value)
    return environment.from_string((REPO / path).read_text()).render({**SAMPLE, **(values or {})})


def renderings() -> list[tuple[str, str, bool]]:
    """(label, document, is a resource policy) for each template, and again for each variant that changes it."""
    documents = []
    for path, is_resource_policy in POLICIES.items():
        plain = render(path)
        documents.append((path, plain, is_resource_policy))
        for variant, values in VARIANTS.items():
            document = render(path, values)
            if document != plain:
                documents.append((f"{path} ({variant})", document, is_resource_policy))
    return documents


def main() -> int:
    failures = 0
    for label, document, is_resource_policy in renderings():
        path = label.split(" ")[0]
        json.loads(document)  # a template that renders invalid JSON fails here, by name
        findings = analyze_policy_string(document, include_community_auditors=True,
                                         ignore_private_auditors=True).findings
        # Resource-based policies legitimately name a Principal; besides ACCEPTED, every other finding counts.
        findings = [f for f in findings if not (is_resource_policy and f.issue == "RESOURCE_POLICY_PRINCIPAL")
                    and not accepted(path, f.issue, f.location, f.detail)]
        for finding in findings:
            print(f"{label}: {finding.issue} {finding.detail} {finding.location}")
        failures += len(findings)
        print(f"{label}: {'ok' if not findings else f'{len(findings)} finding(s)'}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
