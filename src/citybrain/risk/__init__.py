"""risk: facts, versioned rule sets, person colours, compound tiers, overrides, appeals."""
