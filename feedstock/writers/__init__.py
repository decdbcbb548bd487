"""feedstock.writers."""
