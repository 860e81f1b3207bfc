"""Auto Scaling's part for the group's instances: scale-in as AWS chooses its victims, the lifecycle hooks
(moto has none) and a worker for every instance.

A new instance waits in Pending:Wait until its launch action settles (CONTINUE: in service; ABANDON or a
timeout with ABANDON: terminated, "launch abandoned"); a terminated one in Terminating:Wait until its action is
completed or its heartbeat runs out, its metadata's target lifecycle state turned Terminated. Booted nodes
complete their own actions; for local processes the loop completes them (launch once the process has started,
termination once it has exited). The actions themselves are kept by whoever the run's instances reach (the
lab's `LifecycleActions`): passed in, as `HookActions`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqs_fleet.sim.fleet import Fleet, live, live_ids
from sqs_fleet.sim.semantics import LAUNCHING, TERMINATING, instances_to_terminate


class Workers(Protocol):
    # True when the workers complete their own lifecycle actions (booted nodes); else the loop completes them.
    completes_lifecycle: bool

    def follow(self, instances: Sequence[str]) -> list[str]:
        """Start a worker for each new instance id, stop the workers of instances gone; say what was done."""

    def in_service(self) -> set[str]:
        """The instances whose worker runs."""

    def stop(self) -> None: ...


class TargetLifecycleState(Protocol):
    """Where an instance reads its metadata (the lab's metadata service): autoscaling/target-lifecycle-state
    and spot/instance-action."""

    def set_target_lifecycle_state(self, instance_id: str, state: str) -> None: ...

    def notice_spot_interruption(self, instance_id: str, seconds_ahead: int = 120) -> None: ...


class SettledAction(Protocol):
    """A lifecycle action, as the group reads its outcome."""

    instance_id: str
    hook: str
    result: str | None
    timed_out: bool


class HookActions(Protocol):
    """Lifecycle actions in progress and their outcomes, on a clock of AWS seconds the loop sets."""

    clock: Callable[[], float]

    def begin(self, instance_id: str, group: str, hook: dict[str, Any]) -> Any: ...

    def complete(self, group: str, hook: str, result: str, instance_id: str | None = None,
                 token: str | None = None) -> Any: ...

    def expire(self) -> Sequence[SettledAction]: ...

    def waiting(self, instance_id: str) -> Any: ...

    def settled(self, instance_id: str) -> SettledAction | None: ...


class GroupLifecycle:
    """The group's instances through their hooks: which wait, which serve, which are terminating.

    `complete_terminations`: False plays local processes whose termination action nothing completes, so the
    drain hook's heartbeat decides (a fleet without the nodes' lifecycle watcher)."""

    def __init__(self, fleet: Fleet, workers: Workers, actions: HookActions,
                 metadata: TargetLifecycleState | None = None, complete_terminations: bool = True) -> None:
        self.fleet, self.workers, self.actions, self.metadata = fleet, workers, actions, metadata
        self.complete_terminations = complete_terminations
        # The group's hooks by transition (the stack has one of each at most).
        self.hooks = {h["LifecycleTransition"]: h for h in fleet.autoscaling.describe_lifecycle_hooks(
            AutoScalingGroupName=fleet.group_name)["LifecycleHooks"]}
        self.known: set[str] = set()  # every instance seen in the group
        self.pending: set[str] = set()  # in Pending:Wait: launch action not settled yet
        self.serving_ids: set[str] = set()  # launch action settled with CONTINUE
        self.terminating: set[str] = set()  # in Terminating:Wait: still running, still billed

    def serving(self, group: dict[str, Any]) -> set[str]:
        """Instances in service: live in the group and, with a launch hook, past it with CONTINUE (their own
        word that the consumer is active); without one, their worker running (Terminating:Wait is not)."""
        running = set(live_ids(group))
        if LAUNCHING in self.hooks:
            return running & self.serving_ids
        return self.workers.in_service() & running

    def forget(self, instance: str) -> None:
        """The instance leaves the group without its termination hook (an interruption, scale-in)."""
        self.pending.discard(instance)
        self.serving_ids.discard(instance)

    def resize(self, tick: int, group: dict[str, Any], desired: int, decisions: list[str]) -> None:
        """Set the desired capacity; on scale-in terminate only what AWS would (never a protected instance)."""
        running = live(group)
        victims = instances_to_terminate(running, desired) if desired < len(running) else []
        drain = self.hooks.get(TERMINATING)
        for instance in victims:
            self.fleet.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=instance,
                                                                            ShouldDecrementDesiredCapacity=True)
            self.forget(instance)
            if drain:
                # The drain hook holds it, still running, until its action is completed or its heartbeat runs out;
                # the instance reads Terminated from its metadata and drains.
                self.actions.begin(instance, self.fleet.group_name, drain)
                self.terminating.add(instance)
                if self.metadata:
                    self.metadata.set_target_lifecycle_state(instance, "Terminated")
                decisions.append(f"terminate {instance}: Terminating:Wait (hook {drain['LifecycleHookName']}, "
                                 f"heartbeat {drain.get('HeartbeatTimeout', 3600)} s)")
            else:
                decisions.append(f"terminate {instance}")
        kept = len(running) - len(victims) - desired
        if kept > 0:
            decisions.append(f"{kept} instance(s) protected from scale-in kept running")
        self.fleet.autoscaling.set_desired_capacity(AutoScalingGroupName=self.fleet.group_name,
                                                    DesiredCapacity=desired, HonorCooldown=False)

    def begin_launches(self, group: dict[str, Any], decisions: list[str]) -> None:
        """Each instance new in the group waits in Pending:Wait for its launch action, if the group has a hook."""
        launch = self.hooks.get(LAUNCHING)
        for instance in [i for i in live_ids(group) if i not in self.known]:
            self.known.add(instance)
            if launch:
                self.actions.begin(instance, self.fleet.group_name, launch)
                self.pending.add(instance)
                decisions.append(f"{instance}: Pending:Wait (hook {launch['LifecycleHookName']}, "
                                 f"heartbeat {launch.get('HeartbeatTimeout', 3600)} s)")

    def settle(self, decisions: list[str]) -> bool:
        """Apply the lifecycle actions settled since the last look (completed, or timed out to the hook's default
        result); True when an abandoned launch terminated an instance (Auto Scaling then launches another)."""
        for action in self.actions.expire():
            decisions.append(f"{action.instance_id}: {action.hook} heartbeat timed out, default result {action.result}")
        abandoned = False
        for instance in sorted(i for i in self.pending if not self.actions.waiting(i)):
            self.pending.discard(instance)
            settled = self.actions.settled(instance)
            if settled and settled.result == "CONTINUE":
                self.serving_ids.add(instance)
                decisions.append(f"{instance}: launch action CONTINUE: InService")
                continue
            why = "heartbeat timed out" if settled is None or settled.timed_out else "the instance abandoned it"
            decisions.append(f"{instance}: launch abandoned ({why}): terminated, a replacement launches")
            self.fleet.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=instance,
                                                                            ShouldDecrementDesiredCapacity=False)
            abandoned = True
        for instance in sorted(i for i in self.terminating if not self.actions.waiting(i)):
            self.terminating.discard(instance)
            settled = self.actions.settled(instance)
            how = ("its heartbeat timed out" if settled is None or settled.timed_out
                   else f"its termination action was completed with {settled.result}")
            decisions.append(f"{instance}: terminated, {how}")
        return abandoned

    def follow(self, group: dict[str, Any], decisions: list[str]) -> bool:
        """A worker for every instance that runs; for local processes, their lifecycle actions completed by the
        loop. True when a launch abandoned since changed the group."""
        if self.workers.completes_lifecycle:
            # A node in Terminating:Wait keeps running until its own watcher has completed the action.
            decisions += self.workers.follow(live_ids(group) + sorted(self.terminating))
            return False
        decisions += self.workers.follow(live_ids(group))  # a terminating process is stopped (SIGTERM: drain)
        self.complete_for_local_workers(decisions)
        return self.settle(decisions)

    def complete_for_local_workers(self, decisions: list[str]) -> None:
        """Local processes cannot complete lifecycle actions; the loop does it for them (emulation): a launch once
        the process runs, a termination once follow() has stopped it and it has exited."""
        running = self.workers.in_service()
        for instance in sorted(self.pending & running):
            self.actions.complete(self.fleet.group_name, self.hooks[LAUNCHING]["LifecycleHookName"], "CONTINUE",
                                  instance_id=instance)
        for instance in sorted(self.terminating - running) if self.complete_terminations else []:
            if self.actions.waiting(instance):
                self.actions.complete(self.fleet.group_name, self.hooks[TERMINATING]["LifecycleHookName"],
                                      "CONTINUE", instance_id=instance)
                decisions.append(f"{instance}: worker exited; termination action completed with CONTINUE "
                                 "(by the loop for a local process)")
