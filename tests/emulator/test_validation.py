"""Bad input fails before any AWS call, with a message that names the variable."""

from __future__ import annotations

import pytest

# No server listens here: a run that got past validation would fail with "Could not reach AWS".
UNREACHABLE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
FORK = "https://github.com/acme/sqs-fleet.git"


@pytest.mark.parametrize(
    ("extra_vars", "named"),
    [
        ({"fleet_min_size": 5, "fleet_max_size": 4}, "fleet_min_size 5 is above fleet_max_size 4"),
        ({"fleet_max_size": 50}, "fleet_max_size 50"),
        ({"stack_queue_name": "vehicles queue!"}, "queue_name 'vehicles queue!'"),
        ({"observability_log_retention_days": 42}, "observability_log_retention_days"),
        ({"scaling_period": 45}, "scaling_period 45"),
        # AWS/SQS comes once a minute: a 30 s alarm on it would lapse into INSUFFICIENT_DATA.
        ({"stack_scaling_metric_source": "sqs", "scaling_period": 30},
         "scaling_period 30: the alarms read AWS/SQS ApproximateNumberOfMessagesVisible"),
        ({"queue_max_receive_count": 1}, "queue_max_receive_count 1"),
        ({"queue_visibility_timeout": 0}, "queue_visibility_timeout 0: must be 1-43200 seconds"),
        ({"scaling_idle_window": 100}, "scaling_idle_window 100"),
        ({"fleet_max_size": "four"}, "fleet_max_size"),
        ({"stack_producer_trusted_principals": ["arn:aws:iam::123456789012:root"]},
         "'arn:aws:iam::123456789012:root' is not a role or user ARN"),
        ({"stack_queue_kms_key": "alias/queue-key"}, "identity_queue_kms_key 'alias/queue-key': give alias/aws/sqs"),
        ({"network_mode": "subnets"}, "network_mode subnets: network_subnet_ids must list the workers' subnets"),
        ({"network_zone_count": 1}, "network_zone_count 1: private needs 2 or more zones"),
        ({"network_mode": "public"}, "network_mode"),
        ({"broker": "rabbitmq"}, "broker rabbitmq: sqs or redis"),
        ({"broker": "redis", "network_mode": "default-public"}, "network_mode private"),
        ({"broker": "redis", "network_mode": "subnets", "network_subnet_ids": ["subnet-0a1b2c3d"],
          "network_public_ip": True}, "not subnets with network_public_ip"),
        ({"broker": "redis", "scaling_out_threshold": 2.5}, "scaling_out_threshold"),
        ({"fleet_image": "golden"}, "value of fleet_image must be one of: stock, baked, got: golden"),
        ({"fleet_image": "baked", "fleet_repo_version": "main"},
         "fleet_image baked: fleet_repo_version 'main' must be a 40-hex commit"),
    ],
)
def test_bad_input_is_named_before_any_aws_call(run_playbook, extra_vars, named):
    run = run_playbook("site.yml", extra_vars=extra_vars, env=UNREACHABLE)
    assert run.returncode != 0
    messages = " ".join(run.failure_messages())
    assert named in messages
    assert "Could not reach AWS" not in messages


def test_unreachable_aws_is_explained(run_playbook):
    run = run_playbook("site.yml", env=UNREACHABLE)
    assert run.returncode != 0
    assert "Could not reach AWS at http://127.0.0.1:9" in " ".join(run.failure_messages())


@pytest.mark.parametrize("environment", ["prod", "preprod"])
def test_an_environment_on_aws_needs_the_users_fork(run_playbook, environment):
    """The inventories of real environments ship without a repository: validation says what to set."""
    run = run_playbook("site.yml", "-i", f"inventory/{environment}", env=UNREACHABLE)
    assert run.returncode != 0
    messages = " ".join(run.failure_messages())
    assert "fleet_repo_url '' is not set: set fleet_repo_url to the git URL of your fork" in messages
    assert "Could not reach AWS" not in messages


@pytest.mark.parametrize("url", [
    "https://github.com/example/sqs-fleet.git", "git@github.com:example/sqs-fleet.git",
    "https://example.com/sqs-fleet.git", "https://git.example.org/acme/sqs-fleet.git", "  ",
])
def test_a_placeholder_repository_is_rejected_outside_the_emulator(run_playbook, url):
    run = run_playbook("site.yml", "-i", "inventory/prod", "--tags", "validate", extra_vars={"fleet_repo_url": url},
                       env=UNREACHABLE)
    assert run.returncode != 0
    assert f"fleet_repo_url '{url}' is " in " ".join(run.failure_messages())
    # The emulator's environment takes any repository: its workers are emulated.
    local = run_playbook("site.yml", "--tags", "validate", extra_vars={"fleet_repo_url": url}, env=UNREACHABLE)
    assert local.returncode == 0, local.failure_messages()


def test_a_real_repository_passes(run_playbook):
    for url in (FORK, "git@github.com:acme/sqs-fleet.git", "https://git.examples.io/example-team/sqs-fleet.git"):
        run = run_playbook("site.yml", "-i", "inventory/prod", "--tags", "validate",
                           extra_vars={"fleet_repo_url": url}, env=UNREACHABLE)
        assert run.returncode == 0, (url, run.failure_messages())


def shown_configuration(run):
    tasks = run.report["plays"][0]["tasks"]
    return next(t["hosts"]["localhost"]["msg"] for t in tasks if t["task"]["name"].startswith("Show what"))


def test_environment_variables_load_from_inventory_and_playbook_group_vars(run_playbook, emulator):
    """inventory/<env>/group_vars sets the environment; group_vars/ beside site.yml derives names from it."""
    local = run_playbook("site.yml", "--tags", "validate")
    assert local.returncode == 0, local.failure_messages()
    assert shown_configuration(local) == {
        "environment": "local", "endpoint": emulator.url, "region": "us-east-1",
        "queue": "sqs-fleet-local-vehicles", "group": "sqs-fleet-local-workers (0..4 x t3.micro)",
        "producer": "role sqs-fleet-local-producer, assumable by arn:aws:iam::123456789012:user/moto",
    }
    prod = run_playbook("site.yml", "-i", "inventory/prod", "--tags", "validate", "-e", f"fleet_repo_url={FORK}")
    assert prod.returncode == 0, prod.failure_messages()
    shown = shown_configuration(prod)
    assert (shown["environment"], shown["endpoint"], shown["queue"]) == ("prod", "AWS", "sqs-fleet-prod-vehicles")
    assert shown["group"] == "sqs-fleet-prod-workers (0..4 x t3.small)"


def test_numbers_given_as_key_value_extra_vars_are_checked_as_numbers(run_playbook):
    """`-e name=value` makes strings: the checks compare them as numbers, in both directions."""
    good = run_playbook("site.yml", "--tags", "validate", "-e", "scaling_idle_window=180", "-e", "fleet_max_size=3",
                        "-e", "queue_receive_wait_time=5", env=UNREACHABLE)
    assert good.returncode == 0, good.failure_messages()
    bad = run_playbook("site.yml", "--tags", "validate", "-e", "scaling_idle_window=100", env=UNREACHABLE)
    assert "scaling_idle_window 100: must be a multiple of scaling_period 60" in " ".join(bad.failure_messages())


def test_every_failed_check_of_a_role_is_named_at_once(run_playbook):
    run = run_playbook("site.yml", "--tags", "validate", "-e", "fleet_min_size=-1", "-e", "fleet_max_size=30",
                       "-e", "fleet_volume_size=4", env=UNREACHABLE)
    assert run.returncode != 0
    messages = " ".join(run.failure_messages())
    for named in ("fleet_min_size -1: must be 0 or more", "fleet_max_size 30: must be 1-20",
                  "fleet_volume_size 4: must be 8-1024 GiB"):
        assert named in messages
    assert "fleet_drain_timeout" not in messages, "a check that holds was named"


def test_a_sub_minute_scale_out_period_with_the_from_zero_alarm_passes(run_playbook):
    """The from-zero alarm reads GroupDesiredCapacity (one-minute) on a period of its own, whole minutes: a 10 s
    scale-out period on the publisher's high-resolution metric is no longer refused for it."""
    run = run_playbook("site.yml", "--tags", "validate", "-e", "broker=redis", "-e", "scaling_out_period=10",
                       env=UNREACHABLE)
    assert run.returncode == 0, run.failure_messages()
