"""The vehicle message: its schema (validation, the idempotency key's attribute) and a realistic generator of
sample vehicles. The same schema for both brokers: the SQS consumer and producer and the Celery worker use it.

Standard library only; runs on Python 3.9 (Amazon Linux 2023's system Python).
"""

from __future__ import annotations

import datetime
import random
from typing import Any

# A producer-assigned key that travels as a message attribute, so the consumer can recognise a
# redelivery or a producer retry (both create a new MessageId, never a new key).
IDEMPOTENCY_ATTRIBUTE = "idempotency-key"

STRING_FIELDS = ("vehicleId", "make", "model", "color")
INTEGER_FIELDS = ("year", "mileage")
FIELDS = STRING_FIELDS + INTEGER_FIELDS
FIRST_CAR_YEAR = 1886

Vehicle = dict[str, Any]

_MODELS = {
    "Honda": ["Civic", "Accord", "CR-V", "Jazz"],
    "Toyota": ["Corolla", "Camry", "RAV4", "Yaris", "Prius"],
    "Ford": ["Focus", "Fiesta", "Mustang", "Kuga"],
    "Volkswagen": ["Golf", "Polo", "Passat", "Tiguan"],
    "BMW": ["3 Series", "5 Series", "X3", "i4"],
    "Tesla": ["Model 3", "Model Y", "Model S"],
    "Renault": ["Clio", "Megane", "Zoe"],
    "Hyundai": ["i30", "Tucson", "Kona"],
}
_COLORS = ["Blue", "Red", "Black", "White", "Silver", "Grey", "Green", "Yellow"]


def validation_errors(record: Any) -> list[str]:
    """What is wrong with a vehicle record, as sentences; empty when it is valid."""
    if not isinstance(record, dict):
        return [f"expected a JSON object, got {type(record).__name__}"]
    errors = [f"missing field {name!r}" for name in FIELDS if name not in record]
    errors += [f"unknown field {name!r}" for name in record if name not in FIELDS]
    for name in STRING_FIELDS:
        value = record.get(name)
        if name in record and (not isinstance(value, str) or not value.strip()):
            errors.append(f"{name!r} must be a non-empty string, got {value!r}")
    next_year = datetime.date.today().year + 1
    for name, low, high in (("year", FIRST_CAR_YEAR, next_year), ("mileage", 0, None)):
        value = record.get(name)
        if name not in record:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{name!r} must be an integer, got {value!r}")
        elif value < low or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            errors.append(f"{name!r} must be {bounds}, got {value}")
    return errors


def generate(count: int, seed: int | None = None, first_id: int = 2001) -> list[Vehicle]:
    """`count` realistic vehicles; the same seed gives the same vehicles."""
    rng = random.Random(seed)  # noqa: S311  # nosec B311 - sample data, not security
    this_year = datetime.date.today().year
    vehicles = []
    for number in range(first_id, first_id + count):
        make = rng.choice(sorted(_MODELS))
        year = rng.randint(this_year - 20, this_year)
        vehicles.append({
            "vehicleId": f"VH{number}",
            "make": make,
            "model": rng.choice(_MODELS[make]),
            "year": year,
            "color": rng.choice(_COLORS),
            # 5,000-20,000 km a year of age
            "mileage": (this_year - year) * rng.randint(5000, 20000) + rng.randint(0, 5000),
        })
    return vehicles
