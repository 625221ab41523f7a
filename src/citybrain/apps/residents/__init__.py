"""Compound resident registration (小区居民健康登记, application 9.3): residents register self
and household to a compound, report daily health, see their code and appeal; compound and
community staff see residents (masked), reports, entries and exits, and issue passes."""
