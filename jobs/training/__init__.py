"""Training internals of ``jobs.train``: DeepSpeed configuration, the per-worker loop,
validation with real bytes, MLflow tracking and registration, weight consolidation."""
