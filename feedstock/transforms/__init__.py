"""feedstock.transforms."""
