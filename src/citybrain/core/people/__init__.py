"""Persons and households (人员与家庭), personal data encrypted per field."""
