"""Use cases composed from engine, data and store. No Qt; long jobs are generators yielding Progress."""
