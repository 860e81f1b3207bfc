"""What the test modules share besides fixtures: ansible runs and their results (ansible), the one way to wait
for a condition (polling), queues, producers and consumers on the test emulator (sqs).

Importable as `support` (pyproject's pytest `pythonpath` holds tests/); fixtures stay in the conftest files."""
