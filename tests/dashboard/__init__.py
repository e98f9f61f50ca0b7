"""Tests of the web dashboard: its pages in headless Chromium, its endpoints and storage reads."""
