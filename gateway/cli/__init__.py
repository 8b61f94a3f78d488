"""The operator's CLI, its views of tickets, messages and the outbox, and its imports."""
