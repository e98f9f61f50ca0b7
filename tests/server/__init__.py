"""Tests of the tracker server."""
