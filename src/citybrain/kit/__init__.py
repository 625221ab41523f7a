"""kit: no domain. Settings, database base and portable types, field cipher and blind index,
resident-ID and phone checks, masking, clock, i18n, errors, logging."""
