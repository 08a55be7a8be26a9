"""Persistence: the database is the record for banks, runs, tickets, feedback and checkpoints."""
