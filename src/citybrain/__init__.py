"""citybrain (城市大脑): one epidemic big-data centre and nine applications on a city-brain base."""

__version__ = "0.1.0"
