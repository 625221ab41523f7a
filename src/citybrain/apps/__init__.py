"""apps: one package per application of the nine; an app never imports another app."""
