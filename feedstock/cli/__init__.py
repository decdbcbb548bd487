"""The ``feedstock`` command line: one module per subcommand."""
