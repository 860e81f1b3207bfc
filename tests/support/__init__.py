"""What the test modules share besides fixtures: ansible runs and their results (ansible_runs), the one way
to wait for a condition (polling), queues, producers and consumers on the test emulator (sqs), a Lambda
function for the modules' tests (lambda_function), concurrent receives from one queue (receive_race).

Importable as `support` (pyproject's pytest `pythonpath` holds tests/); fixtures stay in the conftest files."""
