"""The ``labctl`` command line (Typer): one module per command group, one output sink."""
