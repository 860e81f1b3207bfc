"""What-if planning: a load replayed in virtual time through the stack's own scaling rules, and priced
(`sqs-fleet-plan`)."""
