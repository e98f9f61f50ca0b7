"""Benchmark suites (docs/benchmark-suites.md): capture, import, detect, compare, A/B.

One module per concern: `_fingerprint` (the machine), `_git` (the commit and CI context),
`_results` (results and how a run stores them), `_upload` (storing them once),
`_plugin` (``pytest --tracker``), `_importers` (pytest-benchmark and asv files),
`_counter` (instruction counts), `_stats` (rank tests), `_detect` (change points),
`_history` (series over commits), `_compare` (verdicts), `_report` (tables and Markdown),
`_sources` (results of a commit, from a server or a file) and `_ab` (interleaved A/B runs).
"""
