"""site.yml on the emulator: every resource exists with the properties the design promises."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from ansible_collections.sqs_fleet.aws.plugins.module_utils.aws_rules import step_adjustment_errors

from sqs_fleet.sim.semantics import step_for
from support.ansible_runs import assert_ok

# Each test reads what site.yml made (`deployed`) by the local environment's names as the inventory defines them
# (`names`, the same the stack records).


def role_name(names, role: str) -> str:
    return names["roles"][role]["name"]


def queue_attributes(aws, name):
    sqs = aws("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_queue_has_redrive_encryption_and_long_polling(deployed, names, aws):
    queue, dlq = queue_attributes(aws, names.queue_name), queue_attributes(aws, names.dead_letter_queue_name)
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) >= 3
    assert int(dlq["MessageRetentionPeriod"]) > int(queue["MessageRetentionPeriod"])
    assert queue["KmsMasterKeyId"] == "alias/aws/sqs" and dlq["KmsMasterKeyId"] == "alias/aws/sqs"
    assert int(queue["ReceiveMessageWaitTimeSeconds"]) == 20
    assert int(queue["VisibilityTimeout"]) >= 60


def test_queue_policy_denies_plain_http_and_grants_each_role_only_its_actions(deployed, names, aws):
    producer_role = role_name(names, "producer")
    consumer_role = role_name(names, "consumer")
    queue = queue_attributes(aws, names.queue_name)
    statements = {s["Sid"]: s for s in json.loads(queue["Policy"])["Statement"]}
    deny = statements["DenyInsecureTransport"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    producer, consumer = statements["ProducerSends"], statements["ConsumerReceives"]
    assert producer["Principal"]["AWS"].endswith(f":role/{producer_role}")
    assert consumer["Principal"]["AWS"].endswith(f":role/{consumer_role}")
    assert "sqs:ReceiveMessage" not in producer["Action"] and "sqs:SendMessage" not in consumer["Action"]
    assert all(s["Resource"] == queue["QueueArn"] for s in statements.values())
    assert not any(s["Effect"] == "Allow" and s.get("Principal") == "*" for s in statements.values())


def policy_document(iam, role):
    arn = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    custom = [p["PolicyArn"] for p in arn if ":aws:policy/" not in p["PolicyArn"]]
    assert len(custom) == 1, arn
    version = iam.get_policy(PolicyArn=custom[0])["Policy"]["DefaultVersionId"]
    return iam.get_policy_version(PolicyArn=custom[0], VersionId=version)["PolicyVersion"]["Document"], arn


def test_consumer_role_is_least_privilege_with_session_manager(deployed, names, aws):
    consumer_role = role_name(names, "consumer")
    iam = aws("iam")
    document, attached = policy_document(iam, consumer_role)
    if isinstance(document, str):
        document = json.loads(document)
    sqs = next(s for s in document["Statement"] if s["Sid"] == "ConsumeTheQueue")
    assert set(sqs["Action"]) == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                                  "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert sqs["Resource"].endswith(f":{names.queue_name}")
    metrics = next(s for s in document["Statement"] if s["Sid"] == "PublishAgentMetricsOnly")
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": names.metric_namespace}}
    lifecycle = next(s for s in document["Statement"] if s["Sid"] == "CompleteOwnGroupLifecycleActions")
    assert set(lifecycle["Action"]) == {"autoscaling:CompleteLifecycleAction",
                                        "autoscaling:RecordLifecycleActionHeartbeat"}
    # Its own group only.
    assert lifecycle["Resource"].endswith(f":autoScalingGroup:*:autoScalingGroupName/{names.group_name}")
    assert any(p["PolicyName"] == "AmazonSSMManagedInstanceCore" for p in attached)
    # The AWS managed key needs no grant: nothing of KMS in the workers' policy.
    assert not [s for s in document["Statement"] if "kms:" in json.dumps(s["Action"])]
    profile = iam.get_instance_profile(InstanceProfileName=names["instance_profile"])["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [consumer_role]
    trust = iam.get_role(RoleName=consumer_role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_producer_role_may_only_send(deployed, names, aws):
    producer_role = role_name(names, "producer")
    document, _ = policy_document(aws("iam"), producer_role)
    if isinstance(document, str):
        document = json.loads(document)
    actions = {a for s in document["Statement"] for a in s["Action"]}
    assert actions == {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    # Only the principal the inventory names may assume it, never the whole account.
    trust = aws("iam").get_role(RoleName=producer_role)["Role"]["AssumeRolePolicyDocument"]
    named = [s["Principal"]["AWS"] for s in trust["Statement"]]
    principals = [p for n in named for p in ([n] if isinstance(n, str) else n)]
    assert principals == ["arn:aws:iam::123456789012:user/moto"]


def launch_template_data(aws, names):
    ec2 = aws("ec2")
    version = ec2.describe_launch_template_versions(LaunchTemplateName=names.launch_template, Versions=["$Latest"])
    return version["LaunchTemplateVersions"][0]["LaunchTemplateData"]


def test_launch_template_requires_imdsv2_encrypts_and_has_no_public_ip(deployed, names, aws):
    data = launch_template_data(aws, names)
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["ImageId"].startswith("resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023")
    assert data["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{names['instance_profile']}")
    assert data["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is False
    assert all(m["Ebs"]["Encrypted"] for m in data["BlockDeviceMappings"])


def test_launch_template_carries_the_project_tags_and_one_version(deployed, names, aws, run_playbook):
    ec2 = aws("ec2")
    template = ec2.describe_launch_templates(LaunchTemplateNames=[names.launch_template])["LaunchTemplates"][0]
    # DescribeTags: the emulator's DescribeLaunchTemplates shows only the tags a template was created with.
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [template["LaunchTemplateId"]]}])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == names["tags"]
    # A rerun leaves the template as it is: no new version for tags copied into its launch data.
    assert_ok(run_playbook("site.yml"), ["rerun"])
    versions = ec2.describe_launch_template_versions(LaunchTemplateName=names.launch_template)[
        "LaunchTemplateVersions"]
    assert [v["VersionNumber"] for v in versions] == [1]


def test_user_data_bootstraps_with_ansible_pull_and_holds_no_secrets(deployed, names, aws):
    user_data = base64.b64decode(launch_template_data(aws, names)["UserData"]).decode()
    assert user_data.startswith("#!/bin/bash")
    assert "ansible-pull --url" in user_data and "--checkout" in user_data
    assert f'"consumer_queue": "{names.queue_name}"' in user_data
    # The node's lifecycle watcher learns its group and termination hook from the node configuration.
    assert f'"lifecycle_watcher_group_name": "{names.group_name}"' in user_data
    assert '"lifecycle_watcher_hook_name": "drain"' in user_data
    assert '"lifecycle_watcher_launch_hook_name": "launch"' in user_data
    assert "complete_launch ABANDON" in user_data  # CONTINUE is the watcher's, once the consumer is active
    for secret in ("testing", "AWS_SECRET_ACCESS_KEY", "AKIA", "aws_access_key"):
        assert secret not in user_data


def test_group_scales_between_zero_and_four_with_metrics_launch_and_drain_hooks(deployed, names, aws):
    autoscaling = aws("autoscaling")
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[names.group_name])["AutoScalingGroups"][0]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 4, 0)
    assert group["LaunchTemplate"]["LaunchTemplateName"] == names.launch_template
    assert len(group["VPCZoneIdentifier"].split(",")) >= 2
    assert group["EnabledMetrics"]
    assert {t["Key"]: t["Value"] for t in group["Tags"]} == names["tags"]
    hooks = autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=names.group_name)["LifecycleHooks"]
    # A launch that nothing completes is abandoned (never counted as capacity); a drain that nothing completes
    # still lets the instance go once its heartbeat runs out.
    assert sorted((h["LifecycleTransition"], h["HeartbeatTimeout"], h["DefaultResult"]) for h in hooks) == [
        ("autoscaling:EC2_INSTANCE_LAUNCHING", 600, "ABANDON"),
        ("autoscaling:EC2_INSTANCE_TERMINATING", 300, "CONTINUE"),
    ]


def policies(aws, names):
    found = aws("autoscaling").describe_policies(AutoScalingGroupName=names.group_name)["ScalingPolicies"]
    keys = {name: key for key, name in names["policies"].items()}
    return {keys[p["PolicyName"]]: p for p in found}


def test_scaling_policies_obey_aws_rules_and_size_the_group_to_the_backlog(deployed, names, aws):
    found = policies(aws, names)
    out, scale_in = found["scale_out"], found["scale_in"]
    for policy in (out, scale_in):
        assert policy["PolicyType"] == "StepScaling" and policy["AdjustmentType"] == "ExactCapacity"
        assert step_adjustment_errors(policy["StepAdjustments"]) == []
    # threshold 1, 10 messages per instance (inventory/local), max 4
    for backlog, instances in [(1, 1), (10, 1), (11, 2), (35, 4), (1000, 4)]:
        assert step_for(out["StepAdjustments"], backlog - 1)["ScalingAdjustment"] == instances
    assert step_for(scale_in["StepAdjustments"], 0 - 1)["ScalingAdjustment"] == 0


def test_alarms_watch_the_backlog_and_call_the_right_policies(deployed, names, aws):
    # The default source is the backlog publisher's high-resolution metric (scaling_metric_source=publisher):
    # scale out on one 10-second period, scale in after 3 idle minutes, no data never read as empty.
    found = policies(aws, names)
    keys = {name: key for key, name in names.alarms.items()}
    alarms = {keys[a["AlarmName"]]: a
              for a in aws("cloudwatch").describe_alarms(AlarmNames=list(keys))["MetricAlarms"]}
    out, scale_in = alarms["scale_out"], alarms["scale_in"]
    assert out["AlarmActions"] == [found["scale_out"]["PolicyARN"]]
    assert scale_in["AlarmActions"] == [found["scale_in"]["PolicyARN"]]
    assert (out["ComparisonOperator"], out["Threshold"], out["EvaluationPeriods"]) == (
        "GreaterThanOrEqualToThreshold", 1, 1)
    assert (scale_in["ComparisonOperator"], scale_in["Threshold"]) == ("LessThanThreshold", 1)
    assert out["Period"] == 10 and scale_in["EvaluationPeriods"] * scale_in["Period"] == 180
    assert out["TreatMissingData"] == scale_in["TreatMissingData"] == "missing"
    for alarm in (out, scale_in):
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("SqsFleet", "Backlog", "Maximum")
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": names.queue_name}]
    stale = alarms["publisher_stale"]
    assert (stale["Statistic"], stale["ComparisonOperator"], stale["Threshold"]) == (
        "SampleCount", "LessThanThreshold", 1)
    assert stale["TreatMissingData"] == "breaching" and stale["Period"] * stale["EvaluationPeriods"] == 120
    dead = alarms["dead_letters"]
    assert dead["Dimensions"] == [{"Name": "QueueName", "Value": names.dead_letter_queue_name}]
    assert dead["Threshold"] == 1


def test_dashboards_show_the_queue_and_the_group(deployed, names, aws):
    cloudwatch = aws("cloudwatch")
    sqs = json.loads(cloudwatch.get_dashboard(DashboardName=names.dashboards["sqs"])["DashboardBody"])
    ec2 = json.loads(cloudwatch.get_dashboard(DashboardName=names.dashboards["ec2"])["DashboardBody"])
    sqs_metrics = {(m[1], m[3]) for w in sqs["widgets"] for m in w["properties"].get("metrics", [])
                   if isinstance(m[0], str)}  # not the backlog expression
    for metric in ("ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible",
                   "NumberOfMessagesSent", "NumberOfMessagesReceived", "NumberOfMessagesDeleted",
                   "NumberOfEmptyReceives", "ApproximateAgeOfOldestMessage"):
        assert (metric, names.queue_name) in sqs_metrics
    assert ("ApproximateNumberOfMessagesVisible", names.dead_letter_queue_name) in sqs_metrics
    ec2_metrics = {(m[1], m[3]) for w in ec2["widgets"] for m in w["properties"].get("metrics", [])}
    for metric in ("GroupDesiredCapacity", "GroupInServiceInstances", "CPUUtilization", "mem_used_percent",
                   "disk_used_percent", "NetworkIn", "NetworkOut"):
        assert (metric, names.group_name) in ec2_metrics


def test_log_group_keeps_logs_for_an_allowed_retention(deployed, names, aws):
    groups = aws("logs").describe_log_groups(logGroupNamePrefix=names.log_group)["logGroups"]
    assert [(g["logGroupName"], g["retentionInDays"]) for g in groups] == [(names.log_group, 7)]


def test_rerun_and_check_mode_report_no_change(deployed, run_playbook):
    rerun = run_playbook("site.yml")
    assert_ok(rerun, ["rerun"])
    assert rerun.stats["changed"] == 0
    check = run_playbook("site.yml", "--check")
    assert_ok(check, ["check"])
    assert check.stats["changed"] == 0


def test_produce_playbook_seeds_the_stack_queue(deployed, names, run_playbook, aws):
    run = run_playbook("produce.yml", extra_vars={"count": 12, "seed": 3})
    assert_ok(run, ["produce.yml"])
    assert run.stats["changed"] == 1
    attributes = queue_attributes(aws, names.queue_name)
    assert int(attributes["ApproximateNumberOfMessages"]) == 12
    bad = run_playbook("produce.yml", extra_vars={"count": "many"})
    assert bad.returncode != 0 and "count 'many'" in " ".join(bad.failure_messages())


def test_rendered_user_data_is_shellcheck_clean(deployed, names, aws, tmp_path):
    script = tmp_path / "user-data.sh"
    script.write_text(base64.b64decode(launch_template_data(aws, names)["UserData"]).decode())
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run([str(shellcheck), "--shell=bash", "--severity=style", str(script)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
