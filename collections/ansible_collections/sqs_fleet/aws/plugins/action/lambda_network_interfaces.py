# The wait of sqs_fleet.aws.lambda_network_interfaces, on the controller: Lambda may take 45 minutes to release
# a function's interfaces, and a module prints nothing until it returns. Each poll here runs the module once and
# prints what remains, so a long wait shows its progress.
from __future__ import annotations

import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()
MODULE = "sqs_fleet.aws.lambda_network_interfaces"


def described(interfaces: list[dict]) -> str:
    return ", ".join(f"{i['id']} ({i['subnet_id']}, {i['status']})" for i in interfaces)


class ActionModule(ActionBase):
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        try:
            timeout = int(args.get("wait_timeout", 0))
            interval = int(args.get("poll_interval", 30))
        except (TypeError, ValueError) as error:
            raise AnsibleActionFail(f"wait_timeout and poll_interval: whole seconds ({error})") from error
        if timeout < 0 or interval < 1:
            raise AnsibleActionFail(f"wait_timeout {timeout}, poll_interval {interval}: 0 or more, 1 or more")
        name = args.get("function_name")
        started = time.monotonic()
        outcome = self._execute_module(MODULE, module_args=args, task_vars=task_vars)
        result.update(outcome)
        if outcome.get("failed") or timeout == 0 or self._task.check_mode or not outcome.get("interfaces"):
            if timeout:
                result["waited"] = 0
            return result
        # Later polls only read: the function left its VPC (or was deleted) in the first.
        poll = {**args, "detach": False}
        while True:
            waited = int(time.monotonic() - started)
            remaining = outcome.get("interfaces", [])
            if not remaining:
                display.display(f"lambda_network_interfaces: {name}: every interface released after {waited} s",
                                stderr=True)
                break
            if waited >= timeout:
                result.update(failed=True, interfaces=remaining, waited=waited, msg=(
                    f"{len(remaining)} network interface(s) of Lambda function {name} still exist after {waited} s: "
                    f"{described(remaining)}. Lambda releases them with the function's execution role, which must "
                    "keep ec2:DeleteNetworkInterface until then; subnets and security groups they sit in cannot be "
                    "deleted before."))
                return result
            display.display(f"lambda_network_interfaces: {name}: {len(remaining)} interface(s) remain after "
                            f"{waited} s of at most {timeout} s: {described(remaining)}", stderr=True)
            time.sleep(min(interval, max(timeout - waited, 0)) or interval)
            outcome = self._execute_module(MODULE, module_args=poll, task_vars=task_vars)
            if outcome.get("failed"):
                result.update(outcome)
                return result
        result.update(interfaces=[], waited=int(time.monotonic() - started))
        return result
