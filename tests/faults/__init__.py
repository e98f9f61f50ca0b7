"""Fault-injection tests: exactly-once delivery and bounded memory under real failures."""
