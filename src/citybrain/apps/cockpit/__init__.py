"""The leadership cockpit (疫情态势领导驾驶舱, application 9.9): pre-aggregated figures per area,
measure and day, kept up to date by event handlers; alerts; data freshness; a live stream."""
