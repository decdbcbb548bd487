"""feedstock.trainer."""
