"""feedstock.loaders."""
