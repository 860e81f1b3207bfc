"""sqs_fleet.aws.instance_type_zones on the emulator: the zones that offer a type, and a type offered nowhere named."""

from __future__ import annotations


def test_zones_offering_a_type_and_a_type_offered_nowhere(run_module):
    zones = run_module("instance_type_zones", {"instance_types": ["t3.micro"]})
    assert "us-east-1e" not in zones["zones"] and "us-east-1a" in zones["zones"]
    unknown = run_module("instance_type_zones", {"instance_types": ["t3.nonesuch"]})
    assert unknown.get("failed") and "instance type t3.nonesuch is offered in no Availability Zone" in unknown["msg"]
