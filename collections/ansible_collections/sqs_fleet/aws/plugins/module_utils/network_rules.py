# What a worker subnet needs, decided from EC2's descriptions alone (no calls here, so it is unit-tested):
# the Availability Zones that offer an instance type, and whether each subnet's route table gives a path to
# every service the workers call.
from __future__ import annotations

# How the messages name a service (the endpoint suffix after com.amazonaws.<region>.).
SERVICE_NAMES = {
    "sqs": "SQS",
    "logs": "CloudWatch Logs",
    "monitoring": "CloudWatch",
    "ssm": "SSM",
    "ssmmessages": "SSM messages",
    "ec2messages": "EC2 messages",
    "autoscaling": "Auto Scaling",
    "sts": "STS",
    "s3": "S3",
}
# Endpoint states that carry traffic, or soon will.
LIVE_ENDPOINT_STATES = ("available", "pending", "pendingacceptance")
LIVE_NAT_STATES = ("available", "pending")
INTERNET = "0.0.0.0/0"


def zones_offering(offerings, instance_types):
    """{instance type: sorted zones} from DescribeInstanceTypeOfferings (location type availability-zone)."""
    zones = {name: set() for name in instance_types}
    for offering in offerings:
        if offering["InstanceType"] in zones:
            zones[offering["InstanceType"]].add(offering["Location"])
    return {name: sorted(found) for name, found in zones.items()}


def common_zones(offered):
    """The zones that offer every instance type of {type: zones}, sorted."""
    sets = [set(zones) for zones in offered.values()]
    return sorted(set.intersection(*sets)) if sets else []


def keep_offering_subnets(subnets, offered):
    """(kept, dropped, errors): subnets whose zone offers every type; dropped ones with why; an error per type
    that no subnet's zone offers."""
    zones = set(common_zones(offered))
    kept = [s for s in subnets if s["AvailabilityZone"] in zones]
    dropped = []
    for subnet in subnets:
        if subnet["AvailabilityZone"] not in zones:
            missing = sorted(t for t, z in offered.items() if subnet["AvailabilityZone"] not in z)
            dropped.append({"subnet_id": subnet["SubnetId"], "availability_zone": subnet["AvailabilityZone"],
                            "reason": f"{', '.join(missing)} not offered in {subnet['AvailabilityZone']}"})
    listed = ", ".join(sorted({f"{s['SubnetId']} ({s['AvailabilityZone']})" for s in subnets}))
    errors = [f"instance type {name} is not offered in the Availability Zone of any chosen subnet: {listed}"
              for name, found in sorted(offered.items()) if not {s["AvailabilityZone"] for s in subnets} & set(found)]
    return kept, dropped, errors


def route_table_of(subnet, route_tables):
    """The table a subnet uses: its explicit association, else its VPC's main table."""
    for table in route_tables:
        if any(a.get("SubnetId") == subnet["SubnetId"] for a in table.get("Associations", [])):
            return table
    for table in route_tables:
        if table["VpcId"] == subnet["VpcId"] and any(a.get("Main") for a in table.get("Associations", [])):
            return table
    return None


def internet_route(table, public_ip):
    """'nat' or 'igw' when the table sends 0.0.0.0/0 where workers can use it, else None, and why not."""
    routes = [r for r in (table or {}).get("Routes", [])
              if r.get("DestinationCidrBlock") == INTERNET and r.get("State", "active") == "active"]
    if any(r.get("NatGatewayId") for r in routes):
        return "nat", ""
    gateway = any(str(r.get("GatewayId", "")).startswith("igw-") for r in routes)
    if gateway and public_ip:
        return "igw", ""
    if gateway:
        return None, "no NAT gateway route (an internet gateway route, but workers get no public IP)"
    return None, "no NAT gateway route"


def endpoint_for(service, region, vpc_id, table_id, endpoints):
    """The endpoint that serves `service` to a subnet on route table `table_id`, or None."""
    name = f"com.amazonaws.{region}.{service}"
    for endpoint in endpoints:
        if (endpoint["VpcId"] != vpc_id or endpoint["ServiceName"] != name
                or endpoint.get("State", "").lower() not in LIVE_ENDPOINT_STATES):
            continue
        if endpoint.get("VpcEndpointType") == "Gateway" and table_id in endpoint.get("RouteTableIds", []):
            return endpoint
        # Without private DNS the SDKs' default hostnames do not reach an interface endpoint.
        if endpoint.get("VpcEndpointType", "Interface") == "Interface" and endpoint.get("PrivateDnsEnabled"):
            return endpoint
    return None


def subnet_problems(subnets, route_tables, endpoints, services, region, public_ip, internet_for=None):
    """One sentence per subnet and service the workers could not reach. `internet_for` names what needs the
    internet itself (the git repository); only a NAT gateway or an internet gateway with public IPs serve it."""
    problems = []
    for subnet in subnets:
        where = f"subnet {subnet['SubnetId']} ({subnet['AvailabilityZone']})"
        table = route_table_of(subnet, route_tables)
        path, why_not = internet_route(table, public_ip)
        if path:
            continue
        table_id = (table or {}).get("RouteTableId")
        for service in services:
            if endpoint_for(service, region, subnet["VpcId"], table_id, endpoints) is None:
                kind = "gateway endpoint on its route table" if service == "s3" else "endpoint"
                problems.append(f"{where} has no route to {SERVICE_NAMES.get(service, service)}: {why_not} and no "
                                f"com.amazonaws.{region}.{service} {kind} in {subnet['VpcId']}")
        if internet_for:
            problems.append(f"{where} has no route to the internet ({internet_for}): {why_not}")
    return problems
