"""feedstock.pipeline."""
