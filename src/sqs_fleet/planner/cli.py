"""sqs-fleet-plan: replay a load through the stack's own scaling rules in virtual time, and price it.

    sqs-fleet-plan --profile diurnal --compare idle_window=60,180,900 --wait-target-p95 120
    sqs-fleet-plan --csv arrivals.csv --csv-interval 60 --work lognormal:2,0.5 --set image=baked
    ansible-playbook plan.yml -i inventory/prod -e profile=bursty-day -e compare=max_size=2,4,8

The stack's settings come from its record (.run/stacks/<env>.json, written by site.yml) or, before a deploy,
its inventory; plan.yml also passes what only the inventory holds (instance type, Spot, image, timeouts).
Every model input is printed with where it comes from.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from sqs_fleet import RUN_DIR
from sqs_fleet.planner import compare, load, plot, prices
from sqs_fleet.planner.replay import Result, summary
from sqs_fleet.planner.settings import Settings, SettingsError
from sqs_fleet.stack import Stack, StackNotFound

COLUMNS = ("wait p50 s", "wait p95 s", "wait max s", "drain max s", "instance-minutes", "idle share", "scale events")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sqs-fleet-plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--environment", default="local", help="the stack's environment (default local)")
    where.add_argument("--stack", type=Path, metavar="FILE", help="a recorded stack, e.g. .run/stacks/prod.json")
    parser.add_argument("--inventory-settings", metavar="JSON", default="{}",
                        help="what only the inventory holds, as plan.yml passes it (fleet_instance_type, ...)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--profile", choices=load.PROFILES, default="diurnal", help="a named load (default diurnal)")
    source.add_argument("--csv", type=Path, metavar="FILE", help="arrivals per interval: count, or second,count rows")
    parser.add_argument("--csv-interval", type=int, default=60, metavar="SECONDS", help="the CSV's interval (60)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply a named profile's rates and bursts")
    parser.add_argument("--duration", type=int, default=load.DAY, metavar="SECONDS",
                        help="a named profile's length (default one day)")
    parser.add_argument("--work", default="fixed:1", metavar="SPEC",
                        help="seconds a message takes: fixed:S, exponential:MEAN, lognormal:MEDIAN,SIGMA (fixed:1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the load, the work and Spot interruptions")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="change a setting, e.g. --set image=baked --set spot_interruptions_per_hour=0.05")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=V1,V2",
                        help="replay each value (repeat for every combination), e.g. idle_window=60,180,900")
    parser.add_argument("--wait-target-p95", type=float, metavar="SECONDS",
                        help="name the cheapest alternative whose p95 message wait is at most this")
    parser.add_argument("--prices", type=Path, metavar="FILE", help="a price table (default: the project's)")
    parser.add_argument("--plot", type=Path, default=RUN_DIR / "plan" / "plan.png", metavar="PNG",
                        help="where the plot goes (default .run/plan/plan.png)")
    parser.add_argument("--no-plot", action="store_true", help="no plot")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    return parser


class Progress:
    """A bar on stderr, redrawn when a whole percent more is done."""

    def __init__(self, label: str) -> None:
        self.label, self.shown = label, -1

    def __call__(self, fraction: float) -> None:
        percent = int(fraction * 100)
        if percent != self.shown:
            self.shown = percent
            bar = "#" * (percent // 4)
            sys.stderr.write(f"\r{self.label[:40]:40} [{bar:25}] {percent:3d}%")
            if percent >= 100:
                sys.stderr.write("\n")
            sys.stderr.flush()


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    text = [[str(h) for h in header]] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in text]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def settings_for(args: argparse.Namespace) -> Settings:
    stack = Stack.load(args.stack) if args.stack else Stack.for_environment(args.environment)
    try:
        inventory = json.loads(args.inventory_settings)
    except json.JSONDecodeError as error:
        raise SettingsError(f"--inventory-settings is not JSON: {error}") from None
    settings = Settings.from_stack(stack, inventory)
    changes = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise SettingsError(f"--set {item!r}: NAME=VALUE")
        changes[name.strip()] = value.strip()
    return settings.changed(changes) if changes else settings


def nothing() -> None:
    pass


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    meanwhile: Callable[[], None] = nothing if args.no_plot else plot.prepare
    with ThreadPoolExecutor(1) as background:
        settings_job = background.submit(settings_for, args)
        if not wait([settings_job], timeout=0.2).done:
            meanwhile()  # Ansible is rendering the inventory in its own process: matplotlib is imported meanwhile
    try:
        base = settings_job.result()
        runs = compare.alternatives(base, args.compare)
        traffic = (load.from_csv(args.csv, args.csv_interval) if args.csv
                   else load.named(args.profile, args.scale, args.duration, args.seed))
        _, work_text = load.work(args.work, args.seed)  # checked before the replays
        table_of_prices = prices.load_prices(args.prices)
    except (SettingsError, load.LoadError, prices.PriceError, StackNotFound) as error:
        print(f"sqs-fleet-plan: {error}", file=sys.stderr)
        return 2
    compared = {name for name, _ in compare.parse_compare(args.compare)}
    print(f"load: {traffic.name}: {traffic.description}; {traffic.total:,} messages over {traffic.seconds / 3600:g} h, "
          f"{len(traffic.bursts())} burst(s) (runs of arrivals {load.BURST_GAP} s or more apart)")
    print(f"work per message: {work_text}")
    print(f"prices: {table_of_prices['region']}, read on {table_of_prices['read_on']} "
          f"({args.prices or prices.PRICES}); each line's page: its `source` in that file")
    print("\nmodel inputs (compared: " + (", ".join(sorted(compared)) or "none") + ")")
    print(table(["input", "value", "from"], [(n, v, s) for n, v, s in base.inputs() if n not in compared]))
    results: list[tuple[str, Result]] = []
    rows: list[compare.Row] = []
    bills = []
    for (label, _), result in zip(runs, compare.replay_all(runs, traffic, args.work, args.seed, Progress,
                                                                         meanwhile)):
        lines = prices.bill(result, table_of_prices)
        day, month = prices.totals(lines, table_of_prices)
        results.append((label, result))
        rows.append(compare.Row(label, summary(result), day, month))
        bills.append(lines)
    print("\nreplayed (virtual time; waits: from sent to processing started; drain: a burst's start to its last "
          "message done; idle: instance time with nothing visible or in flight)")
    print(table(["setting", *COLUMNS, "left", "$/day", "$/month"],
                [(r.label, *(f"{r.figures[c]:.0%}" if c == "idle share" else r.figures[c] for c in COLUMNS),
                  r.figures["left waiting"], r.per_day, r.per_month) for r in rows]))
    print("\ncost per day, by line (" + table_of_prices["region"] + ")")
    items = [line.item for line in bills[0]]
    print(table(["line", *(r.label for r in rows)],
                [(item, *(next((f"{x.per_day:.4f}" for x in b if x.item == item), "-") for b in bills))
                 for item in items] + [("total a day", *(f"{r.per_day:.4f}" for r in rows)),
                                       ("total a month", *(f"{r.per_month:.2f}" for r in rows))]))
    print("\nhow each line was priced (" + rows[0].label + ")")
    for line in bills[0]:
        print(f"  {line.item}: {line.basis}")
    for row, (_, result) in zip(rows, results):
        events = ", ".join(f"{s // 3600:02d}:{s % 3600 // 60:02d} {a}->{b}" for s, a, b in result.scale_events[:8])
        more = f" (+{len(result.scale_events) - 8} more)" if len(result.scale_events) > 8 else ""
        print(f"scale events, {row.label}: {events or 'none'}{more}")
    choice, reason = compare.cheapest(rows, args.wait_target_p95)
    print(f"\n{reason}")
    if not args.no_plot:
        print(f"plot: {plot.draw(results, args.plot)}")
    if args.json:
        args.json.write_text(json.dumps({"load": traffic.name, "rows": [
            {"setting": r.label, "figures": r.figures, "per_day": r.per_day, "per_month": r.per_month} for r in rows],
            "choice": choice.label if choice else None}, indent=2))
    print(f"planned in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
