"""Golden files: the frozen record formats and a recorded journal (see tests/test_golden.py;
regenerate by hand with scripts/golden.py)."""
