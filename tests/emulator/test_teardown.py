"""teardown.yml is the mirror of site.yml: nothing of the project is left, and a rerun changes nothing; on a stack
with `broker: redis` too, whose publisher runs in the VPC: Lambda releases the function's network interfaces with
its execution role, so the role goes only once they are gone, and the subnets and security groups after them."""

from __future__ import annotations

from sqs_fleet.stack import Stack
from support.ansible_runs import assert_ok


def project_resources(aws, names: Stack) -> dict[str, list[str]]:
    """Everything on the emulator that carries the stack's prefix or the project's tag, by kind."""
    prefix, project = names.prefix, names["project"]
    cloudwatch, iam, ec2 = aws("cloudwatch"), aws("iam"), aws("ec2")
    tagged = [{"Name": "tag:Project", "Values": ["sqs-fleet"]}]
    return {
        "queues": aws("sqs").list_queues(QueueNamePrefix=prefix).get("QueueUrls", []),
        "groups": [g["AutoScalingGroupName"] for g in aws("autoscaling").describe_auto_scaling_groups()[
            "AutoScalingGroups"] if g["AutoScalingGroupName"].startswith(prefix)],
        "templates": [t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]
                      if t["LaunchTemplateName"].startswith(prefix)],
        "security groups": [g["GroupId"] for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]],
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs(Filters=tagged)["Vpcs"]],
        "subnets": [s["SubnetId"] for s in ec2.describe_subnets(Filters=tagged)["Subnets"]],
        "route tables": [t["RouteTableId"] for t in ec2.describe_route_tables(Filters=tagged)["RouteTables"]],
        "internet gateways": [g["InternetGatewayId"] for g in ec2.describe_internet_gateways(Filters=tagged)[
            "InternetGateways"]],
        # Deleted NAT gateways and endpoints stay listed for a while, as on AWS.
        "nat gateways": [n["NatGatewayId"] for n in ec2.describe_nat_gateways(Filters=tagged)["NatGateways"]
                         if n["State"] != "deleted"],
        "elastic ips": [a["AllocationId"] for a in ec2.describe_addresses(Filters=tagged)["Addresses"]],
        "vpc endpoints": [e["VpcEndpointId"] for e in ec2.describe_vpc_endpoints(Filters=tagged)["VpcEndpoints"]
                          if e["State"] != "deleted"],
        "alarms": [a["AlarmName"] for a in cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]],
        "dashboards": [d["DashboardName"] for d in cloudwatch.list_dashboards(DashboardNamePrefix=prefix)[
            "DashboardEntries"]],
        "log groups": [g["logGroupName"] for g in aws("logs").describe_log_groups(
            logGroupNamePrefix=f"/{project}/")["logGroups"]],
        "roles": [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(prefix)],
        "policies": [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]
                     if p["PolicyName"].startswith(prefix)],
        "instance profiles": [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]
                              if p["InstanceProfileName"].startswith(prefix)],
        "functions": [f["FunctionName"] for f in aws("lambda").list_functions()["Functions"]
                      if f["FunctionName"].startswith(prefix)],
        "lambda interfaces": [i["NetworkInterfaceId"] for i in ec2.describe_network_interfaces(
            Filters=[{"Name": "interface-type", "Values": ["lambda"]}])["NetworkInterfaces"]],
    }


def test_teardown_removes_everything_and_reruns_without_change(emulator, run_playbook, aws, names):
    emulator.reset()
    assert_ok(run_playbook("site.yml"), ["site.yml"])
    made = project_resources(aws, names)
    # On SQS the publisher runs outside the VPC: Lambda makes it no interfaces.
    assert made.pop("lambda interfaces") == [] and all(made.values()), made

    first = run_playbook("teardown.yml")
    assert_ok(first, ["teardown.yml"])
    assert first.stats["changed"] > 0
    assert project_resources(aws, names) == {kind: [] for kind in project_resources(aws, names)}

    again = run_playbook("teardown.yml")
    assert_ok(again, ["second teardown.yml"])
    assert again.stats["changed"] == 0


def test_a_redis_stack_is_torn_down_after_lambda_releases_the_publishers_interfaces(emulator, run_playbook, aws,
                                                                                   names_of):
    names, redis = names_of("local-redis"), ("-i", "inventory/local-redis")
    emulator.reset()
    assert_ok(run_playbook("site.yml", *redis), ["site.yml redis"])
    made = project_resources(aws, names)
    assert len(made["lambda interfaces"]) == 2 and made["functions"] and made["subnets"], made

    teardown = run_playbook("teardown.yml", *redis)
    assert_ok(teardown, ["teardown.yml redis"])
    assert project_resources(aws, names) == {kind: [] for kind in made}
    tasks = [task["task"]["name"] for play in teardown.report["plays"] for task in play["tasks"]]
    released = tasks.index("publisher : Wait until Lambda has released the function's network interfaces")
    assert tasks.index("publisher : Remove the function") < released < tasks.index(
        "publisher : Remove the function's and the schedule's roles")
