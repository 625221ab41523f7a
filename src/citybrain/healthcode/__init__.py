"""healthcode: signing keys, signed codes, QR, scan verification, trust list."""
