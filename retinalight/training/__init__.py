"""Training: LightningModules and the experiment runner."""
