"""The agencies' feed files: each agency's shape, its rows from the model, its faults."""
