"""Print what site.yml made, read back from AWS (or the emulator): queue depths, the group, the scaling
alarms and their policies, and links to the dashboards. Used by `make demo`.

    sqs-fleet-summary [--environment local] [--stack .run/stacks/local.json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sqs_fleet import aws
from sqs_fleet.stack import Stack, StackNotFound, output_file


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--environment", default="local")
    parser.add_argument("--stack", type=Path, help="the stack site.yml recorded (default: by environment)")
    args = parser.parse_args(argv)
    try:
        stack = Stack.load(args.stack or output_file(args.environment))
    except StackNotFound as error:
        print(f"summary: {error}", file=sys.stderr)
        return 2
    client = aws.clients()
    sqs, autoscaling, cloudwatch = client("sqs"), client("autoscaling"), client("cloudwatch")

    print(f"Stack {stack.prefix} in {stack.region} ({stack['endpoint_url'] or 'AWS'})")
    for queue in (stack["queue"], stack["dead_letter_queue"]):
        attributes = sqs.get_queue_attributes(QueueUrl=queue["url"], AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        print(f"  queue {queue['name']}: {attributes['ApproximateNumberOfMessages']} visible, "
              f"{attributes['ApproximateNumberOfMessagesNotVisible']} in flight")
    producer = stack["roles"]["producer"]
    print(f"  producer role {producer['name']}" if producer.get("arn") else
          "  producer role: none (no principal is named to assume one; the queue grants no producer)")
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[stack.group_name])["AutoScalingGroups"][0]
    print(f"  group {stack.group_name}: min {group['MinSize']}, max {group['MaxSize']}, "
          f"desired {group['DesiredCapacity']}, {len(group['Instances'])} instances")
    policies = {p["PolicyARN"]: p["PolicyName"] for p in autoscaling.describe_policies(
        AutoScalingGroupName=stack.group_name)["ScalingPolicies"]}
    for alarm in cloudwatch.describe_alarms(AlarmNames=list(stack.alarms.values()))["MetricAlarms"]:
        actions = ", ".join(policies.get(a, a) for a in alarm["AlarmActions"]) or "dashboard only"
        print(f"  alarm {alarm['AlarmName']}: {alarm['ComparisonOperator']} {alarm['Threshold']:g} -> {actions}")
    for name in stack.dashboards.values():
        print(f"  dashboard {name}: https://{stack.region}.console.aws.amazon.com/cloudwatch/home"
              f"?region={stack.region}#dashboards/dashboard/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
