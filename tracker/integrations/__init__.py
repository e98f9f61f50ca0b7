"""Training frameworks logging to tracker, as their W&B integrations log to W&B.

- `tracker.integrations.lightning.TrackerLogger`: a Lightning ``Logger``;
- `tracker.integrations.transformers.TrackerCallback`: a transformers ``TrainerCallback``;
- `tracker.integrations.keras.TrackerCallback`: a Keras callback (W&B's
  ``WandbMetricsLogger``).

Each module imports its framework when it is imported itself; ``import tracker`` imports
none of them. docs/coming-from-wandb.md says how to switch from the W&B ones.
"""
