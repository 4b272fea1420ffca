"""The ``avlearn`` command line. One module per subcommand; ``main`` dispatches."""
