"""datahub: the data centre (疫情防控大数据中心) — intake, validation, pseudonymisation, lake."""
