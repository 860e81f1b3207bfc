#!/usr/bin/python
# Why a project module: amazon.aws.ec2_security_group sleeps 3 s after creating a group before it reads it
# again (a fixed sleep in a loop), whatever AWS says. This module reads the new group back at once and
# waits only while AWS does not show it yet (or not yet with the egress rule AWS adds to a VPC group).
from __future__ import annotations

DOCUMENTATION = r"""
module: security_group
short_description: Create, update or delete a VPC security group with exactly the given rules
version_added: 1.3.0
author: The sqs-fleet authors
description:
  - Finds the group by name in its VPC; creates it tagged, or brings its rules and tags to the ones given.
  - The group ends with exactly the ingress and egress rules given; AWS's default allow-all egress rule is
    removed unless it is one of them. Rule descriptions are updated in place.
  - After a change, reads the group back until AWS shows it as asked (bounded by I(wait_timeout)); never
    sleeps a fixed time.
  - The description cannot change once the group exists (AWS has no call for it); a different one is
    reported as a warning.
options:
  name:
    description: Group name, unique in the VPC.
    type: str
    required: true
  description:
    description: Group description; required when I(state=present).
    type: str
  vpc_id:
    description: The group's VPC; required when I(state=present).
    type: str
  state:
    description: Whether the group should exist.
    type: str
    default: present
    choices: [present, absent]
  rules:
    description: Ingress rules, each with one or more targets.
    type: list
    elements: dict
    default: []
    suboptions: &rule
      proto:
        description: C(tcp), C(udp), or C(-1) (C(all)) for every protocol and port.
        type: str
        default: tcp
      ports:
        description: Ports (C(443)) or ranges (C(1024-2048)); required unless I(proto=-1).
        type: list
        elements: str
      cidr_ip:
        description: IPv4 CIDR blocks.
        type: list
        elements: str
      group_id:
        description: Security group ids.
        type: list
        elements: str
      group_name:
        description: Names of security groups in the same VPC.
        type: list
        elements: str
      rule_desc:
        description: The rule's description.
        type: str
  rules_egress:
    description: Egress rules, as I(rules).
    type: list
    elements: dict
    default: []
    suboptions: *rule
  tags:
    description: The group's tags; others are removed (except AWS's own C(aws:) tags).
    type: dict
    default: {}
  wait_timeout:
    description: Seconds to wait for AWS to show a new or changed group as asked.
    type: int
    default: 120
notes:
  - Supports check mode and diff mode; the diff shows the description, the rules and the tags.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Workers with no inbound access, HTTPS out
  sqs_fleet.aws.security_group:
    name: workers
    description: Workers; no inbound access
    vpc_id: vpc-0a1b2c3d
    rules: []
    rules_egress:
      - {proto: tcp, ports: [443], cidr_ip: 0.0.0.0/0, rule_desc: AWS APIs over TLS}
    tags: {Project: sqs-fleet, Environment: prod}

- name: Endpoints that admit the workers' group only
  sqs_fleet.aws.security_group:
    name: endpoints
    description: Interface endpoints; HTTPS from the workers only
    vpc_id: vpc-0a1b2c3d
    rules:
      - {proto: tcp, ports: [443], group_name: workers, rule_desc: The workers}

- name: Remove a group
  sqs_fleet.aws.security_group:
    name: endpoints
    vpc_id: vpc-0a1b2c3d
    state: absent
"""

RETURN = r"""
group_id:
  description: The group's id; null in check mode before the group exists, or when absent.
  returned: always
  type: str
  sample: sg-0123456789abcdef0
group:
  description: The group as DescribeSecurityGroups returns it (empty when absent or not yet made in check mode).
  returned: always
  type: dict
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.ec2 import add_ec2_tags, remove_ec2_tags
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    boto3_tag_list_to_ansible_dict,
    compare_aws_tags,
)
from ansible_collections.sqs_fleet.aws.plugins.module_utils.ec2_resources import (
    tagged_at_creation,
    tags_after,
    wait_for,
)

ALL = "-1"
# Where each kind of target sits in an IpPermission, and its key there.
TARGETS = {"cidr": ("IpRanges", "CidrIp"), "cidr6": ("Ipv6Ranges", "CidrIpv6"),
           "group": ("UserIdGroupPairs", "GroupId"), "prefix": ("PrefixListIds", "PrefixListId")}


class RuleError(Exception):
    pass


def port_ranges(rule):
    if rule["proto"] == ALL:
        return [(None, None)]
    if not rule.get("ports"):
        raise RuleError(f"rule {rule}: ports are required for protocol {rule['proto']}")
    ranges = []
    for port in rule["ports"]:
        low, _, high = str(port).partition("-")
        try:
            ranges.append((int(low), int(high or low)))
        except ValueError:
            raise RuleError(f"rule {rule}: {port} is not a port or a range of ports") from None
    return ranges


def wanted_rules(rules, group_ids_by_name):
    """{(proto, from, to, kind, target): description} from the module's rules, group names resolved."""
    wanted = {}
    for rule in rules:
        proto = str(rule["proto"]).lower()
        rule = dict(rule, proto=ALL if proto in ("-1", "all") else proto)
        if rule["proto"] not in ("tcp", "udp", ALL):
            raise RuleError(f"rule {rule}: protocol {rule['proto']} is not one of tcp, udp, -1")
        targets = [("cidr", cidr) for cidr in rule.get("cidr_ip") or []]
        targets += [("group", group_id) for group_id in rule.get("group_id") or []]
        targets += [("group", group_ids_by_name[name]) for name in rule.get("group_name") or []]
        if not targets:
            raise RuleError(f"rule {rule}: give cidr_ip, group_id or group_name")
        for low, high in port_ranges(rule):
            for kind, target in targets:
                wanted[(rule["proto"], low, high, kind, target)] = rule.get("rule_desc") or None
    return wanted


def current_rules(permissions):
    """The same shape from a group's IpPermissions or IpPermissionsEgress."""
    current = {}
    for permission in permissions:
        proto = permission["IpProtocol"]
        low, high = (None, None) if proto == ALL else (permission.get("FromPort"), permission.get("ToPort"))
        for kind, (field, key) in TARGETS.items():
            for target in permission.get(field, []):
                current[(proto, low, high, kind, target[key])] = target.get("Description") or None
    return current


def to_permissions(rules):
    permissions = []
    for (proto, low, high, kind, target), description in sorted(rules.items(), key=str):
        field, key = TARGETS[kind]
        entry = {key: target, **({"Description": description} if description else {})}
        permission = {"IpProtocol": proto, field: [entry]}
        if proto != ALL:
            permission.update(FromPort=low, ToPort=high)
        permissions.append(permission)
    return permissions


def rules_view(rules):
    """Rules as the diff shows them, in a stable order."""
    view = []
    for (proto, low, high, _kind, target), description in sorted(rules.items(), key=str):
        ports = None if low is None else (str(low) if low == high else f"{low}-{high}")
        view.append({"proto": proto, "ports": ports, "target": target, "description": description})
    return view


def view(group):
    if not group:
        return {}
    return {
        "GroupName": group["GroupName"], "Description": group["Description"], "VpcId": group.get("VpcId"),
        "Ingress": rules_view(current_rules(group.get("IpPermissions", []))),
        "Egress": rules_view(current_rules(group.get("IpPermissionsEgress", []))),
        "Tags": boto3_tag_list_to_ansible_dict(group.get("Tags") or []),
    }


def plan(current, wanted):
    """(to revoke, to authorize, descriptions to update) for one direction."""
    revoke = {key: value for key, value in current.items() if key not in wanted}
    authorize = {key: value for key, value in wanted.items() if key not in current}
    describe = {key: value for key, value in wanted.items() if key in current and current[key] != value}
    return revoke, authorize, describe


def find(client, name, vpc_id):
    filters = [{"Name": "group-name", "Values": [name]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    return client.describe_security_groups(Filters=filters, aws_retry=True)["SecurityGroups"]


def read(client, group_id):
    try:
        return client.describe_security_groups(GroupIds=[group_id], aws_retry=True)["SecurityGroups"][0]
    except is_boto3_error_code("InvalidGroup.NotFound"):
        return None  # created, not visible yet (eventual consistency)


def group_ids_by_name(module, client, rules, vpc_id):
    """{name: id} of the groups the rules name; a name missing is an error, except in check mode."""
    names = sorted({name for rule in rules for name in rule.get("group_name") or []})
    found = {}
    for name in names:
        groups = find(client, name, vpc_id)
        if groups:
            found[name] = groups[0]["GroupId"]
        elif module.check_mode:
            found[name] = f"(group {name}, not made yet)"
        else:
            module.fail_json(msg=f"security group {name} named in a rule does not exist in {vpc_id}")
    return found


def change_rules(client, group_id, direction, revoke, authorize, describe):
    calls = {
        "in": (client.revoke_security_group_ingress, client.authorize_security_group_ingress,
               client.update_security_group_rule_descriptions_ingress),
        "out": (client.revoke_security_group_egress, client.authorize_security_group_egress,
                client.update_security_group_rule_descriptions_egress),
    }[direction]
    # Authorize before revoking: a rule that only changes target never leaves a moment with neither.
    for call, rules in ((calls[1], authorize), (calls[0], revoke), (calls[2], describe)):
        if rules:
            call(GroupId=group_id, IpPermissions=to_permissions(rules), aws_retry=True)


def main():
    rule = dict(
        proto=dict(type="str", default="tcp"),
        ports=dict(type="list", elements="str"),
        cidr_ip=dict(type="list", elements="str"),
        group_id=dict(type="list", elements="str"),
        group_name=dict(type="list", elements="str"),
        rule_desc=dict(type="str"),
    )
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            description=dict(type="str"),
            vpc_id=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            rules=dict(type="list", elements="dict", options=rule, default=[]),
            rules_egress=dict(type="list", elements="dict", options=rule, default=[]),
            tags=dict(type="dict", default={}),
            wait_timeout=dict(type="int", default=120),
        ),
        required_if=[("state", "present", ["description", "vpc_id"])],
        supports_check_mode=True,
    )
    params = module.params
    name, vpc_id = params["name"], params["vpc_id"]
    client = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff())
    try:
        groups = find(client, name, vpc_id)
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not read security group {name}")
    if len(groups) > 1:
        module.fail_json(msg=f"security group {name}: {len(groups)} groups of that name, give vpc_id")
    group = groups[0] if groups else None
    before = view(group)

    if params["state"] == "absent":
        if group and not module.check_mode:
            try:
                client.delete_security_group(GroupId=group["GroupId"], aws_retry=True)
            except is_boto3_error_code("InvalidGroup.NotFound"):
                pass  # removed meanwhile: the end state is the one asked for
            except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
                module.fail_json_aws(error, msg=f"Could not delete security group {name}")
        module.exit_json(changed=group is not None, group_id=None, group={}, diff={"before": before, "after": {}})

    tags = {str(k): str(v) for k, v in params["tags"].items()}
    try:
        by_name = group_ids_by_name(module, client, params["rules"] + params["rules_egress"], vpc_id)
        wanted = {"in": wanted_rules(params["rules"], by_name), "out": wanted_rules(params["rules_egress"], by_name)}
    except RuleError as error:
        module.fail_json(msg=str(error))
    except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
        module.fail_json_aws(error, msg=f"Could not read the security groups the rules of {name} name")
    after = {
        "GroupName": name, "Description": group["Description"] if group else params["description"], "VpcId": vpc_id,
        "Ingress": rules_view(wanted["in"]), "Egress": rules_view(wanted["out"]),
        "Tags": tags_after(before.get("Tags", {}), tags),
    }
    if group and group["Description"] != params["description"]:
        module.warn(f"security group {name} keeps its description {group['Description']!r}: AWS cannot change "
                    "it; delete the group and run again to use the new one")

    def pending(group):
        """What remains to do: {direction: (revoke, authorize, describe)} and the tag changes."""
        rules = {
            "in": plan(current_rules(group.get("IpPermissions", [])), wanted["in"]),
            "out": plan(current_rules(group.get("IpPermissionsEgress", [])), wanted["out"]),
        }
        tag_steps = compare_aws_tags(boto3_tag_list_to_ansible_dict(group.get("Tags") or []), tags)
        return {d: p for d, p in rules.items() if any(p)}, tag_steps

    def settled(group):
        rules, (to_set, to_remove) = pending(group)
        return not rules and not to_set and not to_remove

    changed = group is None or not settled(group)
    if changed and not module.check_mode:
        try:
            if group is None:
                group_id = client.create_security_group(
                    GroupName=name, Description=params["description"], VpcId=vpc_id,
                    aws_retry=True, **tagged_at_creation("security-group", tags),
                )["GroupId"]
                # AWS adds an allow-all egress rule to every VPC group: read the group once it shows that rule,
                # or a rule left out of rules_egress could stay.
                group, shown = wait_for(lambda: read(client, group_id),
                                        lambda g: g is not None and bool(g.get("IpPermissionsEgress")),
                                        params["wait_timeout"])
                if not shown:
                    module.fail_json(msg=f"security group {name} ({group_id}) was created but AWS did not show it "
                                         f"with its default egress rule within {params['wait_timeout']} s",
                                     changed=True, group_id=group_id)
            group_id = group["GroupId"]
            rules, (to_set, to_remove) = pending(group)
            for direction, (revoke, authorize, describe) in rules.items():
                change_rules(client, group_id, direction, revoke, authorize, describe)
            add_ec2_tags(client, module, group_id, to_set)
            remove_ec2_tags(client, module, group_id, to_remove)
            group, shown = wait_for(lambda: read(client, group_id), lambda g: g is not None and settled(g),
                                    params["wait_timeout"])
            if not shown:
                module.warn(f"security group {name}: AWS did not show the rules and tags as asked within "
                            f"{params['wait_timeout']} s; a rerun will say what is left")
        except (ClientError, BotoCoreError) as error:
            action = "update" if before else "create"
            module.fail_json_aws(error, msg=f"Could not {action} security group {name}")
    module.exit_json(changed=changed, group_id=(group or {}).get("GroupId"), group=group or {},
                     diff={"before": before, "after": after})


if __name__ == "__main__":
    main()
