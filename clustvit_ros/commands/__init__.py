"""The ``clustvit`` subcommands of the model layer: argument parsing and printing, kept out of model/."""
