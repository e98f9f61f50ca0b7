"""Tests of benchmark suites: capture, import, detection, verdicts, the CLI, the view."""
