"""The backlog publisher's Lambda function, played in-process: nothing on the emulator runs the function nor
its schedule, so each tick the loop invokes the same handler, with the environment the function has on the
emulator (read back from its configuration), one data point per tick."""

from __future__ import annotations

import contextlib
import datetime
import io

from sqs_fleet.sim.fleet import Fleet
from sqs_fleet_workers import backlog_publisher  # files/: what the function runs


class EmulatedPublisher:
    def __init__(self, fleet: Fleet, environment: dict[str, str]) -> None:
        self.fleet, self.environment, self.handler = fleet, environment, backlog_publisher
        self.log = io.StringIO()  # the function's log lines, as its log group would hold them
        self.key = (environment.get("BACKLOG_NAMESPACE", ""), environment.get("BACKLOG_DIMENSION_VALUE", ""),
                    environment.get("BACKLOG_METRIC_NAME", "Backlog"))
        # The one dimension of what it puts (the handler's defaults when the function sets none).
        self.dimension = (environment.get("BACKLOG_DIMENSION_NAME") or "QueueName",
                          environment.get("BACKLOG_DIMENSION_VALUE", ""))
        self.running = True
        self.last: float | None = None

    @classmethod
    def for_stack(cls, fleet: Fleet) -> EmulatedPublisher | None:
        """The stack's publisher, or None for a stack without one."""
        if not fleet.stack.data.get("publisher"):
            return None
        function = fleet.stack.data["publisher"]["function"]
        configuration = fleet.client("lambda").get_function_configuration(FunctionName=function)
        return cls(fleet, dict(configuration.get("Environment", {}).get("Variables", {})))

    def stop(self) -> None:
        """The publisher stops (a failing function, a disabled schedule): no more data points."""
        self.running = False

    def invoke(self, at: datetime.datetime, decisions: list[str]) -> float | None:
        if not self.running:
            return None
        # The function's own log lines go to its log group on AWS; here they would interleave with the run's
        # lines, so they are kept apart, as Lambda keeps them.
        with contextlib.redirect_stdout(self.log):
            result = self.handler.invoke({"publishes": 1, "timestamp": at.isoformat()}, None, self.environment,
                                         self.fleet.client)
        value = float(result["values"][0])
        if value != self.last:
            decisions.append(f"backlog publisher (emulated invocation of the function's handler): {value:g}")
        self.last = value
        return value
