"""Print what site.yml made, read back from AWS (or the emulator): queue depths, the group, the scaling
alarms and their policies, and links to the dashboards. Used by `make demo`.

    python tools/stack_summary.py [--prefix sqs-fleet-local]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import boto3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="sqs-fleet-local")
    args = parser.parse_args(argv)
    region = os.environ.get("AWS_REGION", "us-east-1")
    sqs, autoscaling, cloudwatch = (boto3.client(s, region_name=region) for s in ("sqs", "autoscaling", "cloudwatch"))

    print(f"Stack {args.prefix} in {region} ({os.environ.get('AWS_ENDPOINT_URL') or 'AWS'})")
    for name in (f"{args.prefix}-vehicles", f"{args.prefix}-vehicles-dlq"):
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        print(f"  queue {name}: {attributes['ApproximateNumberOfMessages']} visible, "
              f"{attributes['ApproximateNumberOfMessagesNotVisible']} in flight")
    group = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"{args.prefix}-workers"])["AutoScalingGroups"][0]
    print(f"  group {group['AutoScalingGroupName']}: min {group['MinSize']}, max {group['MaxSize']}, "
          f"desired {group['DesiredCapacity']}, {len(group['Instances'])} instances")
    policies = {p["PolicyARN"]: p["PolicyName"] for p in autoscaling.describe_policies(
        AutoScalingGroupName=group["AutoScalingGroupName"])["ScalingPolicies"]}
    for alarm in cloudwatch.describe_alarms(AlarmNamePrefix=args.prefix)["MetricAlarms"]:
        actions = ", ".join(policies.get(a, a) for a in alarm["AlarmActions"]) or "dashboard only"
        print(f"  alarm {alarm['AlarmName']}: {alarm['ComparisonOperator']} {alarm['Threshold']:g} -> {actions}")
    for dashboard in cloudwatch.list_dashboards(DashboardNamePrefix=args.prefix)["DashboardEntries"]:
        name = dashboard["DashboardName"]
        print(f"  dashboard {name}: https://{region}.console.aws.amazon.com/cloudwatch/home"
              f"?region={region}#dashboards/dashboard/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
