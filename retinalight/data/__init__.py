"""Data layer: readers, FOV masks, padding, augmentation and LightningDataModules."""
