"""What ships to worker nodes, importable on the controller as the package sqs_fleet_workers (pyproject.toml maps
it to this directory). A node runs each program as a script from a flat directory, its modules beside it; each
program therefore imports them relatively when it is part of this package and by top-level name otherwise
(docs/workers.md)."""
