"""analysis: identity linkage, trajectories, co-presence contacts, screening rules."""
