"""The emulator as sqs_fleet.lab.emulator starts it launches from a launch template's later versions, as AWS
does (moto alone stores a new version's UserData raw and then fails every launch from it), and deletes a
template's versions but the default one (moto alone does not implement DeleteLaunchTemplateVersions), and
deletes a group's scaling policies and lifecycle hooks with it (moto alone keeps them)."""

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


def test_versions_but_the_default_one_are_deleted(aws):
    ec2 = aws("ec2")
    data = {"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    template = ec2.create_launch_template(LaunchTemplateName="deletion-check", LaunchTemplateData=data)
    template_id = template["LaunchTemplate"]["LaunchTemplateId"]
    for _ in range(2):
        ec2.create_launch_template_version(LaunchTemplateName="deletion-check", LaunchTemplateData=data)
    ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion="3")
    try:
        deleted = ec2.delete_launch_template_versions(LaunchTemplateName="deletion-check", Versions=["2", "3", "7"])
        assert deleted["SuccessfullyDeletedLaunchTemplateVersions"] == [
            {"LaunchTemplateId": template_id, "LaunchTemplateName": "deletion-check", "VersionNumber": 2}]
        default, unknown = deleted["UnsuccessfullyDeletedLaunchTemplateVersions"]
        assert {k: v for k, v in default.items() if k != "ResponseError"} == {
            "LaunchTemplateId": template_id, "LaunchTemplateName": "deletion-check", "VersionNumber": 3}
        assert default["ResponseError"]["Code"] == "unexpectedError"
        assert "default" in default["ResponseError"]["Message"]
        assert unknown["VersionNumber"] == 7
        assert unknown["ResponseError"]["Code"] == "launchTemplateVersionDoesNotExist"
        versions = ec2.describe_launch_template_versions(LaunchTemplateId=template_id)["LaunchTemplateVersions"]
        assert sorted(v["VersionNumber"] for v in versions) == [1, 3]
        from_3 = ec2.describe_launch_template_versions(LaunchTemplateId=template_id, MinVersion="3")
        assert [v["VersionNumber"] for v in from_3["LaunchTemplateVersions"]] == [3]
        # The rest keep their numbers, the default is still the default, and a new version takes no deleted number.
        [default_version] = ec2.describe_launch_template_versions(
            LaunchTemplateId=template_id, Versions=["$Default"])["LaunchTemplateVersions"]
        assert default_version["VersionNumber"] == 3
        created = ec2.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData=data)
        assert created["LaunchTemplateVersion"]["VersionNumber"] == 4
        by_id = ec2.delete_launch_template_versions(LaunchTemplateId=template_id, Versions=["1", "4"])
        assert [v["VersionNumber"] for v in by_id["SuccessfullyDeletedLaunchTemplateVersions"]] == [1, 4]
        assert by_id["UnsuccessfullyDeletedLaunchTemplateVersions"] == []
    finally:
        ec2.delete_launch_template(LaunchTemplateName="deletion-check")


def test_a_deleted_group_takes_its_policies_and_lifecycle_hooks_with_it(aws):
    ec2, autoscaling = aws("ec2"), aws("autoscaling")
    ec2.create_launch_template(LaunchTemplateName="group-deletion-check",
                               LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"})
    try:
        for group in ("group-deletion-check", "group-kept-check"):
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=group, MinSize=0, MaxSize=1, AvailabilityZones=["us-east-1a"],
                LaunchTemplate={"LaunchTemplateName": "group-deletion-check"})
            autoscaling.put_scaling_policy(AutoScalingGroupName=group, PolicyName=f"{group}-out",
                                           AdjustmentType="ChangeInCapacity", ScalingAdjustment=1)
            autoscaling.put_lifecycle_hook(AutoScalingGroupName=group, LifecycleHookName="launch",
                                           LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING")
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName="group-deletion-check", ForceDelete=True)
        assert autoscaling.describe_policies(AutoScalingGroupName="group-deletion-check")["ScalingPolicies"] == []
        assert autoscaling.describe_lifecycle_hooks(AutoScalingGroupName="group-deletion-check")["LifecycleHooks"] == []
        kept = autoscaling.describe_policies(AutoScalingGroupName="group-kept-check")["ScalingPolicies"]
        assert [p["PolicyName"] for p in kept] == ["group-kept-check-out"]
        assert len(autoscaling.describe_lifecycle_hooks(AutoScalingGroupName="group-kept-check")["LifecycleHooks"]) == 1
    finally:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName="group-kept-check", ForceDelete=True)
        ec2.delete_launch_template(LaunchTemplateName="group-deletion-check")
