"""The emulator as sqs_fleet.lab.emulator starts it launches from a launch template's later versions, as AWS
does (moto alone stores a new version's UserData raw and then fails every launch from it)."""

from __future__ import annotations

import base64


def test_a_group_launches_from_a_new_template_version_with_user_data(aws):
    ec2, autoscaling = aws("ec2"), aws("autoscaling")
    user_data = base64.b64encode(b"#!/bin/sh\necho version 2\n").decode()
    data = {"ImageId": "ami-12c6146b", "InstanceType": "t3.micro", "UserData": user_data}
    ec2.create_launch_template(LaunchTemplateName="correction-check", LaunchTemplateData=data)
    ec2.create_launch_template_version(LaunchTemplateName="correction-check", LaunchTemplateData=data)
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="correction-check", MinSize=0, MaxSize=1, AvailabilityZones=["us-east-1a"],
        LaunchTemplate={"LaunchTemplateName": "correction-check", "Version": "$Latest"})
    try:
        autoscaling.set_desired_capacity(AutoScalingGroupName="correction-check", DesiredCapacity=1)
        [group] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["correction-check"])[
            "AutoScalingGroups"]
        assert len(group["Instances"]) == 1
        version = ec2.describe_launch_template_versions(LaunchTemplateName="correction-check", Versions=["2"])
        assert version["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"] == user_data
    finally:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName="correction-check", ForceDelete=True)
        ec2.delete_launch_template(LaunchTemplateName="correction-check")
